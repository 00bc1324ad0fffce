"""A lab node: its mount namespace held by one idle process, its links, its entrypoint, and
commands run inside it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError

from bgp import procfs
from routed.lab.state import LabError, alive, read_state, state_dir, write_state
from routed.lab.topology import Node, Topology
from routed.netns import NETNS_RUN_DIR, async_iproute, entered

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


async def loopback_up(netns: str) -> None:
    async with async_iproute(netns) as ipr:
        await ipr.link("set", index=1, state="up")


def start_holder(topo: Topology, node: Node) -> tuple[int, int]:
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
    mnt_ino = procfs.ns_inode(f"/proc/{holder.pid}/ns/mnt")
    assert mnt_ino is not None
    return holder.pid, mnt_ino


def _enter_fd(fd: int) -> None:
    from routed.netns import _setns

    _setns(fd)


async def create_links(topo: Topology) -> None:
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


def check_entrypoints(
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
                    + log_tail(topo, name)
                )
        if time.monotonic() - started >= settle:
            return
        time.sleep(0.1)


def log_tail(topo: Topology, name: str, lines: int = 12) -> str:
    """The end of a node's log, for an error about it (`down` removes the log itself)."""
    log = state_dir(topo) / "logs" / f"{name}.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-lines:] if log.exists() else []
    return f"the end of its log ({log}):\n" + ("\n".join(f"  {line}" for line in tail) or "  (nothing)")


def start_entrypoint(topo: Topology, node: Node, holder: int) -> subprocess.Popen[bytes]:
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
    record = read_state(topo)["nodes"].get(node.name, {})
    pid, mnt_ino = record.get("pid"), record.get("mnt_ino")
    if not alive(pid, mnt_ino):
        raise LabError(
            f"node {node.name} of lab {topo.full_name} is not running; `routed lab up {topo.path}`"
        )
    return int(pid)


def start(topo: Topology, node_name: str) -> int:
    """Run a node's entrypoint again (its daemon stopped or crashed), as `docker start` would.
    The node's namespaces, links and workloads are the ones it had: a restart, not a new node."""
    holder = holder_pid(topo, node_name)
    node = topo.node(node_name)
    pid = start_entrypoint(topo, node, holder).pid
    state = read_state(topo)
    state["nodes"][node.name]["entry_pid"] = pid
    write_state(topo, state)
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


@contextlib.contextmanager
def in_node_netns(topo: Topology, node_name: str) -> Iterator[None]:
    """For tests: run a block (without awaits) inside a node's network namespace."""
    with entered(NETNS_RUN_DIR / topo.node(node_name).netns):
        yield
