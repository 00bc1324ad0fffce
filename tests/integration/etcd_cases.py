"""The IPAM etcd cases, run inside the test's network namespace where etcd listens
(`python -m tests.integration.etcd_cases CASE JSON-ARGS`); prints one JSON line of findings
for test_etcd.py to judge."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bgp import procfs
from routed.config import parse_config
from routed.ipam.backends import IpamError
from routed.ipam.etcd import EtcdIpam

NODE = """\
name: {name}
router_id: 10.0.0.{n}
asn: 64512
fabric: {{interface: eth1, address: 10.0.0.{n}}}
pools: [{pool}]
state_dir: {state}
ipam:
  mode: etcd
  block_size: {block_size}
  release_after: 2
  etcd: {{endpoints: {endpoints}, prefix: {prefix}, timeout: 1{etcd_extra}}}
"""


def node_text(name: str, n: int, args: dict[str, Any], etcd_extra: str = "") -> str:
    return NODE.format(
        etcd_extra=etcd_extra,
        name=name,
        n=n,
        pool=args["pool"],
        state=Path(args["dir"]) / name,
        block_size=args.get("block_size", 26),
        endpoints=json.dumps(args["endpoints"]),
        prefix=args["prefix"],
    )


def ipam(name: str, n: int, args: dict[str, Any]) -> EtcdIpam:
    return EtcdIpam(parse_config(node_text(name, n, args), f"{name}.yaml"))


async def outcome(coro: Any) -> str:
    try:
        return ",".join(map(str, await coro))
    except IpamError as exc:
        return f"error: {exc}"


async def race(args: dict[str, Any]) -> dict[str, Any]:
    """Node c takes the first of two blocks; a and b then race for the last one."""
    c, a, b = ipam("c", 3, args), ipam("a", 1, args), ipam("b", 2, args)
    first = await outcome(c.assign("c1", [], set()))
    results = await asyncio.gather(outcome(a.assign("a1", [], set())), outcome(b.assign("b1", [], set())))
    owners = {"a": [str(x) for x in a.owned_blocks()], "b": [str(x) for x in b.owned_blocks()]}
    for each in (a, b, c):
        await each.close()
    return {"first": first, "results": results, "owners": owners}


def member(args: dict[str, Any], index: int, action: str) -> None:
    """Kill a member (SIGKILL, as a crash) or start it again with its data; the test removes
    every process of the namespace at its end, whatever happened here."""
    entry = args["members"][index]
    if action == "kill":
        os.kill(entry["pid"], signal.SIGKILL)
        while procfs.state(entry["pid"]) not in (None, "Z"):
            time.sleep(0.05)
    else:
        with open(entry["log"], "ab") as log:
            entry["pid"] = subprocess.Popen(entry["argv"], stdout=log, stderr=subprocess.STDOUT).pid


async def cluster(args: dict[str, Any]) -> dict[str, Any]:
    """A 3-member cluster: one member lost, then quorum lost, then back."""
    node = ipam("a", 1, args)
    found: dict[str, Any] = {}
    found["one"] = await outcome(node.assign("w1", [], set()))
    used = {ipaddress.ip_address(found["one"])}
    member(args, 0, "kill")  # the first endpoint, the one in use
    for workload in ("w2", "w3", "w4"):  # w4 needs a new block: a claim with two members of three
        got = await outcome(node.assign(workload, [], used))
        found[workload] = got
        if not got.startswith("error"):
            used.add(ipaddress.ip_address(got))
    found["blocks_one_lost"] = [str(b) for b in node.owned_blocks()]
    member(args, 1, "kill")  # no quorum left
    found["offline_in_owned_block"] = await outcome(node.assign("w5", [], used))
    if not found["offline_in_owned_block"].startswith("error"):
        used.add(ipaddress.ip_address(found["offline_in_owned_block"]))
    full = used | {ipaddress.ip_address(f"{found['w4'].rsplit('.', 1)[0]}.{i}") for i in range(256)}
    found["offline_new_block"] = await outcome(node.assign("w6", [], full))
    found["pending"] = sorted(map(str, node.cache.to_record))
    member(args, 0, "start")
    member(args, 1, "start")
    deadline = time.monotonic() + 30
    while node.cache.to_record and time.monotonic() < deadline:
        await node.maintain(used)
        await asyncio.sleep(0.5)
    found["pending_after"] = sorted(map(str, node.cache.to_record))
    recorded = await node.store.allocations()
    found["recorded"] = {str(ip): a.workload for ip, a in recorded.items()}
    # an allocation whose workload is gone (w1 never attached, say) is released after the grace
    in_use = used - {ipaddress.ip_address(found["one"])}
    await node.maintain(in_use)
    await node.maintain(in_use, now=time.time() + 5)
    found["after_orphans"] = sorted(str(ip) for ip in await node.store.allocations())
    await node.close()
    return found


async def release_as_etcd_dies(args: dict[str, Any]) -> dict[str, Any]:
    """A node's empty block is released, then etcd dies (killed, as a crash) before the rest
    of that round's upkeep: the round must still report the block gone, or the daemon would
    go on announcing a block it no longer owns."""
    node = ipam("a", 1, args)
    found: dict[str, Any] = {"one": await outcome(node.assign("w1", [], set()))}
    found["owned"] = [str(b) for b in node.owned_blocks()]
    await node.maintain(set())  # empty from now on
    real_allocations = node.store.allocations

    async def allocations_after_a_crash() -> Any:
        member(args, 0, "kill")
        return await real_allocations()

    node.store.allocations = allocations_after_a_crash  # type: ignore[method-assign]
    found["changed"] = await node.maintain(set(), now=time.time() + 5)
    found["owned_after"] = [str(b) for b in node.owned_blocks()]
    found["cached_after"] = json.loads((Path(args["dir"]) / "a" / "ipam.json").read_text())["blocks"]
    found["next_round_changed"] = await node.maintain(set(), now=time.time() + 10)
    await node.close()
    return found


async def hostile_records(args: dict[str, Any]) -> dict[str, Any]:
    """etcd holds records routed never wrote (test_etcd.py puts them there): node a adopts only
    its valid block, skips the rest with a log line each, and allocates and upkeeps on."""
    node = ipam("a", 1, args)
    found: dict[str, Any] = {}
    await node.start()
    found["owned"] = [str(b) for b in node.owned_blocks()]
    found["first"] = await outcome(node.assign("w1", [], set()))
    found["over_fabric"] = await outcome(node.assign("w2", [ipaddress.ip_address("10.0.0.5")], set()))
    found["malformed_holder"] = await outcome(node.assign("w3", [ipaddress.ip_address("10.70.1.5")], set()))
    found["foreign"] = await outcome(node.assign("w4", [ipaddress.ip_address("10.70.6.9")], set()))
    found["allocations"] = sorted(str(ip) for ip in await node.store.allocations())
    found["maintained"] = await node.maintain({ipaddress.ip_address("10.70.1.1")})
    found["blocks"] = sorted(str(b) for b in await node.store.blocks())
    await node.close()
    return found


async def secured(args: dict[str, Any]) -> dict[str, Any]:
    """etcd over TLS with client certificates and user authentication: node a claims a block,
    and the same node without its certificate, or with a wrong password, cannot."""
    extra = args["extra"]
    found: dict[str, Any] = {}
    for name in ("right", "no_cert", "bad_password"):
        node = EtcdIpam(parse_config(node_text(name, 1, args, extra[name]), f"{name}.yaml"))
        found[name] = await outcome(node.assign(f"{name}-w1", [], set()))
        await node.close()
    return found


async def network_late(args: dict[str, Any]) -> dict[str, Any]:
    """A node that starts before its network: etcd is unreachable (lo down, 127.0.0.1 has no
    route) for several tries in a row, then the network comes up and the very next claim must
    reach etcd, not wait out a reconnect backoff grown by the failures before it."""
    node = ipam("a", 1, args)
    found: dict[str, Any] = {"before": []}
    subprocess.run(["ip", "link", "set", "lo", "down"], check=True)
    try:
        for attempt in range(6):
            found["before"].append(await outcome(node.assign(f"w{attempt}", [], set())))
            await asyncio.sleep(1)
    finally:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    found["after"] = await outcome(node.assign("w-after", [], set()))
    await node.close()
    return found


if __name__ == "__main__":
    case, raw = sys.argv[1], json.loads(sys.argv[2])
    cases = {
        "race": race,
        "cluster": cluster,
        "release_as_etcd_dies": release_as_etcd_dies,
        "hostile_records": hostile_records,
        "secured": secured,
        "network_late": network_late,
    }
    result = asyncio.run(cases[case](raw))
    print(json.dumps(result), flush=True)
