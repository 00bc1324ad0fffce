"""IPAM blocks against one /32 per container: routes per host, and a new container's convergence.

labs/dual-rr (two reflectors, four hosts) with `--containers` containers per host, twice:
- blocks: as shipped, each host owns 10.65.N.0/26 (ipam: static);
- host-routes: the same lab with `ipam: none`, every container announced as a /32.

Per mode: the `proto routed` routes in each host's kernel (own and learned), then
`--trials` times a container added on h1 and timed until h3's container gets an echo reply
from it (`add_to_reachable_ms`, from the API request: what a runtime waits for), with the
BGP UPDATE messages h3 received meanwhile.

    python -m bench.blocks --containers 50 --trials 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import LABS, node_exec, save
from bench.convergence import api_call, summarize
from routed.lab import runner
from routed.lab.topology import Topology, load_topology

HOSTS = {"h1": "10.0.0.11", "h2": "10.0.0.12", "h3": "10.0.0.13", "h4": "10.0.0.14"}
MODES = ("blocks", "host-routes")


@contextmanager
def dual_rr(mode: str) -> Iterator[Topology]:
    with tempfile.TemporaryDirectory(prefix="routed-bench-") as tmp:
        root = Path(tmp)
        shutil.copytree(LABS / "dual-rr", root / "dual-rr")
        topology = (LABS / "dual-rr.clab.yml").read_text()
        if mode == "host-routes":
            for host in HOSTS:
                node_file = root / "dual-rr" / f"{host}.yaml"
                text = node_file.read_text()
                node_file.write_text(
                    text.replace(f"ipam: {{mode: static, blocks: [10.65.{host[1]}.0/26]}}", "ipam: none")
                )
                topology = topology.replace(
                    f"routed workload add {host}-web --netns web",
                    f"routed workload add {host}-web --netns web --ip 10.65.{host[1]}.1",
                )
        (root / "dual-rr.clab.yml").write_text(topology)
        topo = load_topology(root / "dual-rr.clab.yml", name=f"k{uuid.uuid4().hex[:6]}", prefix="rt")
        runner.up(topo)
        try:
            yield topo
        finally:
            runner.down(topo)


def route_counts(topo: Topology) -> dict[str, dict[str, int]]:
    counts = {}
    for host in HOSTS:
        routes = json.loads(node_exec(topo, host, "ip", "-j", "-4", "route", "show", "proto", "201") or "[]")
        learned = sum(1 for r in routes if "gateway" in r)
        counts[host] = {"total": len(routes), "learned": learned, "own": len(routes) - learned}
    return counts


def updates_received(topo: Topology, host: str) -> int:
    status = json.loads(node_exec(topo, host, "routed", "status", "--json"))
    return sum(p["updates"] for p in status["bgp"]["peers"])


def populate(topo: Topology, mode: str, per_host: int) -> None:
    for host in HOSTS:
        for index in range(2, per_host + 1):
            name = f"c{index}"
            node_exec(topo, host, "ip", "netns", "add", name)
            request: dict[str, Any] = {"op": "workload.add", "id": f"{host}-{name}", "netns": name}
            if mode == "host-routes":
                request["ips"] = [f"10.65.{host[1]}.{index}"]
            api_call(topo, host, request)


def converged(topo: Topology, mode: str, per_host: int) -> bool:
    """Every host routes every other host's containers: a block each, or a /32 each."""
    others = len(HOSTS) - 1
    expected = others if mode == "blocks" else per_host * others
    return all(c["learned"] == expected for c in route_counts(topo).values())


def trial(topo: Topology, mode: str, index: int) -> dict[str, float]:
    name = f"t{index}"
    ip = f"10.65.1.{100 + index}" if mode == "host-routes" else None
    node_exec(topo, "h1", "ip", "netns", "add", name)
    before = updates_received(topo, "h3")
    request: dict[str, Any] = {"op": "workload.add", "id": name, "netns": name}
    if ip is not None:
        request["ips"] = [ip]
    started = time.monotonic()
    reply = api_call(topo, "h1", request)
    address = reply["result"]["ips"][0]
    while True:  # one echo request at a time, each waiting up to 50 ms
        probe = runner.run_in_node(
            topo, "h3", ["ip", "netns", "exec", "web", "ping", "-c1", "-W0.05", address], capture=True
        )
        if probe.returncode == 0:
            break
        if time.monotonic() - started > 30:
            raise RuntimeError(f"trial {index}: {address} not reachable from h3")
    reachable = (time.monotonic() - started) * 1000
    time.sleep(0.5)  # let any UPDATE of this change arrive before counting
    result = {"add_to_reachable_ms": reachable, "updates_at_h3": float(updates_received(topo, "h3") - before)}
    api_call(topo, "h1", {"op": "workload.del", "id": name})
    node_exec(topo, "h1", "ip", "netns", "del", name)
    time.sleep(0.5)
    return result


def measure(mode: str, per_host: int, trials: int) -> dict[str, Any]:
    with dual_rr(mode) as topo:
        populate(topo, mode, per_host)
        deadline = time.monotonic() + 120
        while not converged(topo, mode, per_host):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode}: routes did not settle: {route_counts(topo)}")
            time.sleep(0.5)
        counts = route_counts(topo)
        results = [trial(topo, mode, i) for i in range(trials)]
    summary = summarize(results)
    return {
        "mode": mode,
        "containers_per_host": per_host,
        "routes": counts,
        "summary": summary,
        "trials": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--containers", type=int, default=50, help="containers per host")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = parser.parse_args(argv)
    measured = [measure(mode, args.containers, args.trials) for mode in args.modes]
    for m in measured:
        routes = m["routes"]["h3"]
        s = m["summary"]
        print(
            f"{m['mode']:<12} h3 routes: {routes['total']} "
            f"({routes['learned']} learned, {routes['own']} own)  "
            f"new container reachable from h3: p50 {s['add_to_reachable_ms']['p50']:.0f} ms "
            f"p95 {s['add_to_reachable_ms']['p95']:.0f} ms  UPDATEs at h3 p50 {s['updates_at_h3']['p50']:.0f}"
        )
    print(f"results: {save('blocks', {'results': measured})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
