"""Truth check: does every host's kernel route every container of the fabric, and nothing else?

For each routed host of a running lab, the ground truth is: its own workloads' /32s on
their veths, and every other host's workloads via that host's fabric address. The
check reads the kernel's `proto routed` routes of every host and prints the difference
(missing, wrong next hop, extra). Exit 0 when there is none, 1 otherwise.

    python -m bench.truth labs/dual-rr.clab.yml [--name NAME --prefix PREFIX]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field

from routed.config import load_config
from routed.lab import runner
from routed.lab.topology import Topology, load_topology

CONFIG_TARGET = "/etc/routed/routed.yaml"


@dataclass
class Difference:
    host: str
    prefix: str
    expected: str  # "via 10.0.0.12", "dev", or "" for a route that should not be there
    actual: str  # the same forms, "" when missing

    def __str__(self) -> str:
        if not self.actual:
            return f"{self.host}: missing {self.prefix} {self.expected}"
        if not self.expected:
            return f"{self.host}: extra {self.prefix} {self.actual}"
        return f"{self.host}: {self.prefix} is {self.actual}, should be {self.expected}"


@dataclass
class Report:
    hosts: int = 0
    routes_checked: int = 0
    differences: list[Difference] = field(default_factory=list)


def routed_hosts(topo: Topology) -> dict[str, str]:
    """{node: fabric address} of the lab's routed nodes that are not reflectors."""
    hosts = {}
    for node in topo.nodes:
        for bind in node.binds:
            if bind.target == CONFIG_TARGET:
                cfg = load_config(bind.source)
                if cfg.role.value == "node":
                    hosts[node.name] = str(cfg.fabric.address)
    return hosts


def workloads(topo: Topology, node: str) -> set[str]:
    result = runner.run_in_node(topo, node, ["routed", "workload", "list", "--json"], capture=True)
    if result.returncode != 0:
        raise RuntimeError(f"{node}: routed workload list failed: {result.stderr.strip()}")
    return {ip for w in json.loads(result.stdout) for ip in w["ips"] if ":" not in ip}


def kernel_routes(topo: Topology, node: str) -> dict[str, str]:
    out = subprocess.run(
        ["ip", "-j", "-4", "-n", topo.node(node).netns, "route", "show", "proto", "201"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    routes = {}
    for route in json.loads(out or "[]"):
        dst = route["dst"] if "/" in route["dst"] else f"{route['dst']}/32"
        routes[dst] = f"via {route['gateway']}" if "gateway" in route else "dev"
    return routes


def check(topo: Topology) -> Report:
    hosts = routed_hosts(topo)
    owned = {node: workloads(topo, node) for node in hosts}
    report = Report(hosts=len(hosts))
    for node in hosts:
        expected = {}
        for owner, ips in owned.items():
            for ip in ips:
                expected[f"{ip}/32"] = "dev" if owner == node else f"via {hosts[owner]}"
        actual = kernel_routes(topo, node)
        report.routes_checked += len(expected)
        for prefix in sorted(expected.keys() | actual.keys()):
            want, have = expected.get(prefix, ""), actual.get(prefix, "")
            if want != have:
                report.differences.append(Difference(node, prefix, want, have))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("topology", metavar="FILE")
    parser.add_argument("--name")
    parser.add_argument("--prefix")
    args = parser.parse_args(argv)
    topo = load_topology(args.topology, name=args.name, prefix=args.prefix)
    report = check(topo)
    for difference in report.differences:
        print(difference)
    print(
        f"{report.hosts} hosts, {report.routes_checked} routes checked, {len(report.differences)} differences"
    )
    return 1 if report.differences else 0


if __name__ == "__main__":
    sys.exit(main())
