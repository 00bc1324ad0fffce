"""Bring a containerlab topology up as network namespaces, and take it down again.

Each node is a network namespace named as containerlab names its container
(`clab-<lab>-<node>`) plus a private mount namespace held by one idle process,
in which /etc, /var and /tmp are overlays (the host's files show through, the
node's writes stay in the node: a checkout under /tmp still runs), /run is fresh, /sys shows the
node's own interfaces (and the host's cgroup mounts, for a container runtime in the node), and
the topology's `binds` are mounted where it says.
Commands enter both namespaces with nsenter, so a node behaves like the
container the same file would give in containerlab.

Everything made is recorded in a state directory as it is made, and `down`
finds what to remove from the kernel as well as from that record, so it works
after a crash, a half-made `up`, or a killed node.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pyroute2 import netns as pyroute2_netns
from pyroute2.netlink.exceptions import NetlinkError

from routed.lab.topology import Node, Topology
from routed.netns import NETNS_RUN_DIR, async_iproute, entered

STATE_ROOT = Path(os.environ.get("ROUTED_LAB_STATE", "/run/routed-lab"))
# package data, so an installed routed (a wheel, not the checkout) runs its labs too
ENTRYPOINT = Path(str(resources.files("routed.lab") / "node-entrypoint.sh"))
ENTRYPOINT_IN_IMAGE = "/usr/local/bin/node-entrypoint"

HOLDER_SCRIPT = r"""
set -e
scratch="$1"; shift
mount -t tmpfs -o mode=0700 routed-lab "$scratch"
# the host's cgroup mounts, kept for the node's own /sys (a container runtime in a node,
# podman or dockerd, needs them, as a Docker container node would have them)
mkdir -p "$scratch/cgroup"
mount --rbind /sys/fs/cgroup "$scratch/cgroup" 2>/dev/null || rmdir "$scratch/cgroup"
umount -l /sys 2>/dev/null || true
mount -t sysfs sysfs /sys
if [ -d "$scratch/cgroup" ]; then
    mount --rbind "$scratch/cgroup" /sys/fs/cgroup
    umount -l "$scratch/cgroup"  # one place only: runc takes the first cgroup mount it finds
fi
for dir in etc var tmp; do
    mkdir -p "$scratch/$dir/upper" "$scratch/$dir/work"
    mount -t overlay overlay \
        -o "lowerdir=/$dir,upperdir=$scratch/$dir/upper,workdir=$scratch/$dir/work" "/$dir"
done
while [ "$#" -gt 0 ]; do
    source="$1"; target="$2"; mode="$3"; shift 3
    if [ -d "$source" ]; then mkdir -p "$target"; else mkdir -p "$(dirname "$target")"; : >> "$target"; fi
    mount --bind "$source" "$target"
    if [ "$mode" = ro ]; then mount -o remount,bind,ro "$target"; fi
done
mount -t tmpfs -o mode=0755 run /run
mkdir -p /run/netns
echo ready
exec sleep infinity
"""


class LabError(Exception):
    """The lab could not be brought up or used; the message says what to do."""


@dataclass(frozen=True, slots=True)
class NodeStatus:
    name: str
    netns: str
    image: str
    state: str
    pid: int | None
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]


def state_dir(topo: Topology) -> Path:
    return STATE_ROOT / topo.full_name


def _state_file(topo: Topology) -> Path:
    return state_dir(topo) / "state.json"


def _read_state(topo: Topology) -> dict[str, Any]:
    try:
        return dict(json.loads(_state_file(topo).read_text()))
    except (OSError, ValueError):
        return {"nodes": {}}


def _write_state(topo: Topology, state: dict[str, Any]) -> None:
    path = _state_file(topo)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def _netns_exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def ns_inode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _alive(pid: int | None, mnt_ino: int | None) -> bool:
    """Is `pid` still the process we started (same mount namespace)?"""
    return pid is not None and mnt_ino is not None and ns_inode(f"/proc/{pid}/ns/mnt") == mnt_ino


# --- up ------------------------------------------------------------------------


def up(topo: Topology) -> None:
    """Create every namespace, link and process of the topology; on failure remove them all."""
    if _read_state(topo)["nodes"] or any(_netns_exists(n.netns) for n in topo.nodes):
        raise LabError(
            f"lab {topo.full_name} is already (partly) up; run `routed lab down {topo.path}` first"
        )
    for node in topo.nodes:
        for bind in node.binds:
            if not bind.source.exists():
                raise LabError(
                    f"node {node.name}: bind source {bind.source} does not exist; fix binds: in {topo.path}"
                )
    state: dict[str, Any] = {"lab": topo.name, "prefix": topo.prefix, "topology": str(topo.path), "nodes": {}}
    _write_state(topo, state)
    try:
        for node in topo.nodes:
            state["nodes"][node.name] = {"netns": node.netns}
            _write_state(topo, state)
            pyroute2_netns.create(node.netns)  # plain mount of a new netns, no process left behind
            asyncio.run(_loopback_up(node.netns))
            pid, mnt_ino = _start_holder(topo, node)
            state["nodes"][node.name].update(pid=pid, mnt_ino=mnt_ino)
            _write_state(topo, state)
        asyncio.run(_create_links(topo))
        entrypoints: dict[str, subprocess.Popen[bytes]] = {}
        for node in topo.nodes:
            entrypoints[node.name] = _start_entrypoint(topo, node, state["nodes"][node.name]["pid"])
            state["nodes"][node.name]["entry_pid"] = entrypoints[node.name].pid
            _write_state(topo, state)
        started = time.monotonic()
        for node in topo.nodes:
            for command in node.exec:
                result = run_in_node(topo, node.name, ["sh", "-c", command], capture=True)
                if result.returncode != 0:
                    raise LabError(
                        f"node {node.name}: exec {command!r} exited {result.returncode}: "
                        f"{(result.stdout + result.stderr).strip()}\n{_log_tail(topo, node.name)}"
                    )
        _check_entrypoints(topo, entrypoints, started)
    except BaseException:
        down(topo)
        raise


async def _loopback_up(netns: str) -> None:
    async with async_iproute(netns) as ipr:
        await ipr.link("set", index=1, state="up")


def _start_holder(topo: Topology, node: Node) -> tuple[int, int]:
    scratch = state_dir(topo) / "nodes" / node.name
    scratch.mkdir(parents=True, exist_ok=True)
    bind_args = [arg for b in node.binds for arg in (str(b.source), b.target, "ro" if b.read_only else "rw")]
    netns_fd = os.open(NETNS_RUN_DIR / node.netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        holder = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                HOLDER_SCRIPT,
                "holder",
                str(scratch),
                *bind_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=lambda: _enter_fd(netns_fd),
            pass_fds=(netns_fd,),
        )
    finally:
        os.close(netns_fd)
    assert holder.stdout is not None
    line = holder.stdout.readline().strip()
    if line != "ready":
        holder.kill()
        _, err = holder.communicate(timeout=5)
        raise LabError(f"node {node.name}: could not set up its mount namespace: {err.strip() or line}")
    holder.stdout.close()
    if holder.stderr:
        holder.stderr.close()
    mnt_ino = ns_inode(f"/proc/{holder.pid}/ns/mnt")
    assert mnt_ino is not None
    return holder.pid, mnt_ino


def _enter_fd(fd: int) -> None:
    from routed.netns import _setns

    _setns(fd)


async def _create_links(topo: Topology) -> None:
    netns_of = {n.name: n.netns for n in topo.nodes}
    for a, b in topo.links:
        fd = os.open(NETNS_RUN_DIR / netns_of[b.node], os.O_RDONLY | os.O_CLOEXEC)
        try:
            async with async_iproute(netns_of[a.node]) as ipr:
                try:
                    await ipr.link(
                        "add", ifname=a.ifname, kind="veth", peer={"ifname": b.ifname, "net_ns_fd": fd}
                    )
                except NetlinkError as exc:
                    raise LabError(
                        f"link {a.node}:{a.ifname} <-> {b.node}:{b.ifname}: {os.strerror(exc.code)}; "
                        f"check links: in {topo.path}"
                    ) from exc
                (index,) = await ipr.link_lookup(ifname=a.ifname)
                await ipr.link("set", index=index, state="up")
            async with async_iproute(netns_of[b.node]) as ipr:
                (index,) = await ipr.link_lookup(ifname=b.ifname)
                await ipr.link("set", index=index, state="up")
        finally:
            os.close(fd)


def _node_env(topo: Topology, node: Node) -> dict[str, str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "CLAB_NODE_NAME": node.name,
        "CLAB_LAB_NAME": topo.name,
        "CLAB_INTFS": str(len(node.interfaces)),
    }
    env.update(dict(node.env))
    return env


def nsenter_argv(pid: int, argv: Sequence[str]) -> list[str]:
    return ["nsenter", "--target", str(pid), "--mount", "--net", "--wd=/", "--", *argv]


def _check_entrypoints(
    topo: Topology, entrypoints: dict[str, subprocess.Popen[bytes]], started: float, settle: float = 2.0
) -> None:
    """A node whose daemon dies at start-up is not "running": fail, naming it and showing the
    end of its log (a daemon runs for good, so any exit within `settle` seconds is a failure)."""
    while True:
        for name, process in entrypoints.items():
            code = process.poll()
            if code is not None:
                raise LabError(
                    f"node {name}: its entrypoint exited with code {code} during start-up; "
                    + _log_tail(topo, name)
                )
        if time.monotonic() - started >= settle:
            return
        time.sleep(0.1)


def _log_tail(topo: Topology, name: str, lines: int = 12) -> str:
    """The end of a node's log, for an error about it (`down` removes the log itself)."""
    log = state_dir(topo) / "logs" / f"{name}.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-lines:] if log.exists() else []
    return f"the end of its log ({log}):\n" + ("\n".join(f"  {line}" for line in tail) or "  (nothing)")


def _start_entrypoint(topo: Topology, node: Node, holder: int) -> subprocess.Popen[bytes]:
    """Start what the image's entrypoint starts: routed, BIRD, or nothing (see node-entrypoint.sh)."""
    logs = state_dir(topo) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{node.name}.log", "ab") as log:
        process = subprocess.Popen(
            nsenter_argv(holder, ["sh", str(ENTRYPOINT)]),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_node_env(topo, node),
            start_new_session=True,
        )
    return process


def holder_pid(topo: Topology, node_name: str) -> int:
    """The pid holding a running node's namespaces (what nsenter --target needs)."""
    try:
        node = topo.node(node_name)
    except KeyError:
        names = ", ".join(n.name for n in topo.nodes)
        raise LabError(f"no node {node_name!r} in {topo.path}; nodes are {names}") from None
    record = _read_state(topo)["nodes"].get(node.name, {})
    pid, mnt_ino = record.get("pid"), record.get("mnt_ino")
    if not _alive(pid, mnt_ino):
        raise LabError(
            f"node {node.name} of lab {topo.full_name} is not running; `routed lab up {topo.path}`"
        )
    return int(pid)


def start(topo: Topology, node_name: str) -> int:
    """Run a node's entrypoint again (its daemon stopped or crashed), as `docker start` would.
    The node's namespaces, links and workloads are the ones it had: a restart, not a new node."""
    holder = holder_pid(topo, node_name)
    node = topo.node(node_name)
    pid = _start_entrypoint(topo, node, holder).pid
    state = _read_state(topo)
    state["nodes"][node.name]["entry_pid"] = pid
    _write_state(topo, state)
    return pid


def run_in_node(
    topo: Topology, node_name: str, argv: Sequence[str], *, capture: bool = False, timeout: float | None = 120
) -> subprocess.CompletedProcess[str]:
    pid = holder_pid(topo, node_name)
    return subprocess.run(
        nsenter_argv(pid, argv),
        env=_node_env(topo, topo.node(node_name)),
        text=True,
        capture_output=capture,
        timeout=timeout,
        stdin=subprocess.DEVNULL if capture else None,
    )


# --- down ------------------------------------------------------------------------


def processes_in(net_inodes: set[int], mnt_inodes: set[int]) -> list[int]:
    """Every process (but us) in one of these network or mount namespaces, by inode."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        if ns_inode(entry / "ns/net") in net_inodes or ns_inode(entry / "ns/mnt") in mnt_inodes:
            found.append(int(entry.name))
    return found


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
    for pid in processes_in(set(), mnt_inodes):
        with contextlib.suppress(OSError):
            found = list(Path(f"/proc/{pid}/root/run/netns").iterdir())
            if found:
                return found
    return []


def _with_descendants(pids: list[int]) -> list[int]:
    """The processes and all their descendants: a container runtime's containers live in
    namespaces of their own, below a shim that lives in the node's."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = set(pids), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    out.discard(os.getpid())
    return sorted(out)


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state, ppid, ...), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _started(pid: int) -> str | None:
    """A live process's start time (clock ticks since boot): a pid and this name one process.
    None once it has exited (a zombie included)."""
    fields = _stat(pid)
    return None if fields is None or fields[0] in ("Z", "X") else fields[19]


def _any_alive(targets: dict[int, str]) -> bool:
    return any(_started(pid) == started for pid, started in targets.items())


def _kill_all(net_inodes: set[int], mnt_inodes: set[int], grace: float = 3.0) -> None:
    # Everything found once stays a target: a container's init ignores SIGTERM (pid 1 of its
    # namespace) and, once its shim has died, is no descendant of the node any more.
    targets: dict[int, str] = {}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _with_descendants(processes_in(net_inodes, mnt_inodes)):
            started = _started(pid)
            if started is not None:
                targets.setdefault(pid, started)
        alive = [pid for pid, started in targets.items() if _started(pid) == started]
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
    state = _read_state(topo)
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
        if _netns_exists(name):
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


# --- inspect ------------------------------------------------------------------------


def inspect(topo: Topology) -> list[NodeStatus]:
    state = _read_state(topo)
    statuses = []
    for node in topo.nodes:
        record = state["nodes"].get(node.name, {})
        pid = record.get("pid")
        ipv4: tuple[str, ...] = ()
        ipv6: tuple[str, ...] = ()
        if not _netns_exists(node.netns):
            status = "absent"
        elif _alive(pid, record.get("mnt_ino")):
            status = "running"
            ipv4, ipv6 = asyncio.run(_addresses(node.netns))
        else:
            status = "exited"
        statuses.append(NodeStatus(node.name, node.netns, node.image, status, pid, ipv4, ipv6))
    return statuses


async def _addresses(netns: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    v4: list[str] = []
    v6: list[str] = []
    async with async_iproute(netns) as ipr:
        names = {link["index"]: link.get("ifname") async for link in await ipr.link("dump")}
        async for addr in await ipr.addr("dump"):
            name = names.get(addr["index"], "?")
            if name == "lo" or addr.get("scope") == 253:
                continue
            text = f"{addr.get('address')}/{addr['prefixlen']} ({name})"
            (v4 if addr["family"] == 2 else v6).append(text)
    return tuple(v4), tuple(v6)


@contextlib.contextmanager
def in_node_netns(topo: Topology, node_name: str) -> Iterator[None]:
    """For tests: run a block (without awaits) inside a node's network namespace."""
    with entered(NETNS_RUN_DIR / topo.node(node_name).netns):
        yield
