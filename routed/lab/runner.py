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
import subprocess
import time
from typing import Any

from pyroute2 import netns as pyroute2_netns

from routed.lab.nodes import (
    check_entrypoints,
    create_links,
    holder_pid,
    in_node_netns,
    log_tail,
    loopback_up,
    nsenter_argv,
    run_in_node,
    start,
    start_entrypoint,
    start_holder,
)
from routed.lab.state import (
    STATE_ROOT,
    LabError,
    NodeStatus,
    alive,
    netns_exists,
    read_state,
    state_dir,
    write_state,
)
from routed.lab.teardown import down
from routed.lab.topology import Topology
from routed.netns import async_iproute

# the lab's API (routed lab, the tests, the benchmarks): up, down, start, inspect, exec
__all__ = [
    "STATE_ROOT",
    "LabError",
    "NodeStatus",
    "down",
    "holder_pid",
    "in_node_netns",
    "inspect",
    "nsenter_argv",
    "run_in_node",
    "start",
    "state_dir",
    "up",
]


def up(topo: Topology) -> None:
    """Create every namespace, link and process of the topology; on failure remove them all."""
    if read_state(topo)["nodes"] or any(netns_exists(n.netns) for n in topo.nodes):
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
    write_state(topo, state)
    try:
        for node in topo.nodes:
            state["nodes"][node.name] = {"netns": node.netns}
            write_state(topo, state)
            pyroute2_netns.create(node.netns)  # plain mount of a new netns, no process left behind
            asyncio.run(loopback_up(node.netns))
            pid, mnt_ino = start_holder(topo, node)
            state["nodes"][node.name].update(pid=pid, mnt_ino=mnt_ino)
            write_state(topo, state)
        asyncio.run(create_links(topo))
        entrypoints: dict[str, subprocess.Popen[bytes]] = {}
        for node in topo.nodes:
            entrypoints[node.name] = start_entrypoint(topo, node, state["nodes"][node.name]["pid"])
            state["nodes"][node.name]["entry_pid"] = entrypoints[node.name].pid
            write_state(topo, state)
        started = time.monotonic()
        for node in topo.nodes:
            for command in node.exec:
                result = run_in_node(topo, node.name, ["sh", "-c", command], capture=True)
                if result.returncode != 0:
                    raise LabError(
                        f"node {node.name}: exec {command!r} exited {result.returncode}: "
                        f"{(result.stdout + result.stderr).strip()}\n{log_tail(topo, node.name)}"
                    )
        check_entrypoints(topo, entrypoints, started)
    except BaseException:
        down(topo)
        raise


def inspect(topo: Topology) -> list[NodeStatus]:
    state = read_state(topo)
    statuses = []
    for node in topo.nodes:
        record = state["nodes"].get(node.name, {})
        pid = record.get("pid")
        ipv4: tuple[str, ...] = ()
        ipv6: tuple[str, ...] = ()
        if not netns_exists(node.netns):
            status = "absent"
        elif alive(pid, record.get("mnt_ino")):
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
