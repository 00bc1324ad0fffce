"""Take a lab down: every process in its namespaces killed (found by inode, pinned), then its
namespaces and its state removed. Idempotent, and works after a crash or a half-made `up`."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

from bgp import procfs
from routed.lab.state import netns_exists, read_state, state_dir
from routed.lab.topology import Topology
from routed.netns import NETNS_RUN_DIR


def _pin(path: str | Path, expected: int | None = None) -> tuple[int, int] | None:
    """Hold a namespace open (fd, inode), so its inode cannot be reused while we kill by inode:
    a freed namespace's inode number goes to the next new one, and every `ip netns exec`
    elsewhere makes a new mount namespace. None if it is gone (or not the one expected)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    inode = os.fstat(fd).st_ino
    if expected is not None and inode != expected:
        os.close(fd)
        return None
    return fd, inode


def _inner_netns(mnt_inodes: set[int]) -> list[Path]:
    """Namespaces that nodes made for their workloads, seen through a process of the node."""
    for pid in procfs.in_namespaces(set(), mnt_inodes):
        with contextlib.suppress(OSError):
            found = list(Path(f"/proc/{pid}/root/run/netns").iterdir())
            if found:
                return found
    return []


def _any_alive(targets: dict[int, str]) -> bool:
    return any(procfs.start_time(pid) == started for pid, started in targets.items())


def _kill_all(net_inodes: set[int], mnt_inodes: set[int], grace: float = 3.0) -> None:
    # Everything found once stays a target: a container's init ignores SIGTERM (pid 1 of its
    # namespace) and, once its shim has died, is no descendant of the node any more.
    targets: dict[int, str] = {}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in procfs.with_descendants(procfs.in_namespaces(net_inodes, mnt_inodes)):
            started = procfs.start_time(pid)
            if started is not None:
                targets.setdefault(pid, started)
        alive = [pid for pid, started in targets.items() if procfs.start_time(pid) == started]
        if not alive:
            return
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _any_alive(targets):
            time.sleep(0.05)


def down(topo: Topology) -> list[str]:
    """Remove every process, namespace and link of the lab; returns the namespaces removed. Idempotent."""
    state = read_state(topo)
    names = {n.netns for n in topo.nodes} | {r["netns"] for r in state["nodes"].values() if "netns" in r}
    pins: list[tuple[int, int]] = []
    try:
        # a node's mount namespace only through its own live process: if that one is gone, the
        # inode on record may already be someone else's (the node's netns still finds the rest)
        for record in state["nodes"].values():
            if record.get("pid") and record.get("mnt_ino"):
                pinned = _pin(f"/proc/{record['pid']}/ns/mnt", record["mnt_ino"])
                if pinned is not None:
                    pins.append(pinned)
        mnt_inodes = {inode for _, inode in pins}
        for name in names:
            pinned = _pin(NETNS_RUN_DIR / name)
            if pinned is not None:
                pins.append(pinned)
        for path in _inner_netns(mnt_inodes):
            pinned = _pin(path)
            if pinned is not None:
                pins.append(pinned)
        net_inodes = {inode for _, inode in pins} - mnt_inodes
        _kill_all(net_inodes, mnt_inodes)
    finally:
        for fd, _ in pins:
            os.close(fd)
    removed = []
    for name in sorted(names):
        if netns_exists(name):
            try:
                pyroute2_netns.remove(name)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            removed.append(name)
    directory = state_dir(topo)
    if directory.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(directory)], check=False)
    return removed
