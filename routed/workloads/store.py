"""The node's workloads on disk, so that a restarted daemon (or the CLI) finds them again.

One JSON file under the state directory, replaced atomically, guarded by an
advisory lock so the CLI acting without a daemon and a daemon never interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
from collections.abc import Iterator
from pathlib import Path

from routed import statefile
from routed.dataplane.workload import WorkloadSpec

FORMAT_VERSION = 1


class StoreError(Exception):
    pass


class WorkloadStore:
    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / "workloads.json"
        self._lock_path = self.dir / "workloads.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def load(self) -> dict[str, WorkloadSpec]:
        try:
            raw = statefile.load(self.path, FORMAT_VERSION)
        except statefile.StateFileError as exc:
            raise StoreError(f"workload state {exc}; move the file away to start with no workloads") from exc
        if raw is None:
            return {}
        return {
            item["id"]: WorkloadSpec(
                id=item["id"],
                netns=item["netns"],
                ips=tuple(ipaddress.ip_address(ip) for ip in item["ips"]),
                ifname=item.get("ifname", "eth0"),
                runtime=item.get("runtime", ""),
                network=item.get("network", ""),
            )
            for item in raw.get("workloads", [])
        }

    def save(self, workloads: dict[str, WorkloadSpec]) -> None:
        data = {
            "version": FORMAT_VERSION,
            "workloads": [
                {
                    "id": w.id,
                    "netns": w.netns,
                    "ips": [str(ip) for ip in w.ips],
                    "ifname": w.ifname,
                    **({"runtime": w.runtime} if w.runtime else {}),
                    **({"network": w.network} if w.network else {}),
                }
                for w in sorted(workloads.values(), key=lambda w: w.id)
            ],
        }
        statefile.save(self.path, data)
