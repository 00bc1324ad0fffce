"""The node's workloads on disk, so that a restarted daemon (or the CLI) finds them again.

One JSON file under the state directory, replaced atomically, guarded by an
advisory lock so the CLI acting without a daemon and a daemon never interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from routed import statefile
from routed.config.types import WORKLOAD_ID
from routed.dataplane.workload import WorkloadSpec

FORMAT_VERSION = 1


class StoredWorkload(statefile.StateModel):
    id: Annotated[str, Field(pattern=WORKLOAD_ID.pattern)]
    netns: Annotated[str, Field(max_length=4096)]  # "" for a runtime's (Docker's) workload
    ips: Annotated[tuple[IPv4Address | IPv6Address, ...], Field(min_length=1, max_length=16)]
    ifname: Annotated[str, Field(min_length=1, max_length=15)] = "eth0"
    runtime: Annotated[str, Field(max_length=32)] = ""
    network: Annotated[str, Field(max_length=128)] = ""

    @model_validator(mode="after")
    def _netns_unless_handed_off(self) -> StoredWorkload:
        if not self.netns and not self.runtime:
            raise ValueError("netns is empty, and only a runtime's workload (runtime: docker) has none")
        return self


class WorkloadsFile(statefile.StateModel):
    version: int
    workloads: tuple[StoredWorkload, ...] = ()


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
            stored = statefile.load(self.path, FORMAT_VERSION, WorkloadsFile)
        except statefile.StateFileError as exc:
            raise StoreError(
                f"workload state {exc}; fix that entry, or move the file away to start with no "
                "workloads (their veths stay until deleted by hand)"
            ) from exc
        if stored is None:
            return {}
        return {
            item.id: WorkloadSpec(item.id, item.netns, item.ips, item.ifname, item.runtime, item.network)
            for item in stored.workloads
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
