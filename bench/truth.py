"""Truth check: does every host's kernel route every container of the fabric, and nothing else?

For each routed host of a running lab, the ground truth is: its own workloads' /32s (/128s)
on their veths and its own IPAM blocks `unreachable`; every other host's blocks via that
host's fabric address of the family (IPv4 via its IPv6 address on an IPv6-only fabric), and
that host's workloads outside its blocks as /32s (/128s) via it. The check reads the kernel's
`proto routed` routes of both families on every host and prints the difference (missing,
wrong next hop, extra). Exit 0 when there is none, 1 otherwise.

    python -m bench.truth labs/dual-rr.clab.yml [--name NAME --prefix PREFIX]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

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


def routed_hosts(topo: Topology) -> dict[str, dict[int, str]]:
    """{node: {IP version: the next hop other hosts use for it}} of the lab's routed nodes that
    are not reflectors: the fabric address of the family, else (IPv4 on an IPv6-only fabric)
    the IPv6 one."""
    hosts = {}
    for node, cfg in _host_configs(topo):
        v6 = cfg.fabric.address_for(6)
        v4 = cfg.fabric.address_for(4) or v6
        hosts[node] = {v: str(a) for v, a in ((4, v4), (6, v6)) if a is not None}
    return hosts


def routers(topo: Topology) -> dict[str, dict[int, str]]:
    """{node: {IP version: its eBGP router}} of the hosts behind a router (a ToR, `routed lab
    generate --tors`): everything such a host learns is via that router, not via the host
    that owns it."""
    found: dict[str, dict[int, str]] = {}
    for node, cfg in _host_configs(topo):
        for peer in cfg.listed_peers:
            if peer.kind.value == "ebgp":
                found.setdefault(node, {}).setdefault(peer.address.version, str(peer.address))
    return found


def _host_configs(topo: Topology) -> list[tuple[str, Any]]:
    configs = []
    for node in topo.nodes:
        for bind in node.binds:
            if bind.target == CONFIG_TARGET:
                cfg = load_config(bind.source)
                if cfg.role.value == "node":
                    configs.append((node.name, cfg))
    return configs


@dataclass(frozen=True)
class Holdings:
    blocks: frozenset[str]  # blocks the host owns
    outside: frozenset[str]  # workload addresses outside them (announced as /32s and /128s)
    workloads: frozenset[str]  # every workload address


def host_prefix(ip: str) -> str:
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


def version(prefix: str) -> int:
    return 6 if ":" in prefix else 4


def holdings(topo: Topology, node: str) -> Holdings:
    """What a host owns, from its own state (`routed ipam --json`: works with or without a daemon)."""
    result = runner.run_in_node(topo, node, ["routed", "ipam", "--json"], capture=True)
    if result.returncode != 0:
        raise RuntimeError(f"{node}: routed ipam failed: {result.stderr.strip()}")
    ipam = json.loads(result.stdout)
    return Holdings(
        frozenset(b["block"] for b in ipam["blocks"]),
        frozenset(ipam["outside_blocks"]),
        frozenset(ipam["addresses"]),
    )


def kernel_routes(topo: Topology, node: str) -> dict[str, str]:
    routes = {}
    for family in ("-4", "-6"):
        out = subprocess.run(
            ["ip", "-j", family, "-n", topo.node(node).netns, "route", "show", "proto", "201"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for route in json.loads(out or "[]"):
            dst = route["dst"] if "/" in route["dst"] else host_prefix(route["dst"])
            gateway = route.get("gateway") or (route.get("via") or {}).get("host")  # `via inet6`
            if route.get("type") == "unreachable":
                routes[dst] = "unreachable"
            else:
                routes[dst] = f"via {gateway}" if gateway else "dev"
    return routes


def check(topo: Topology, owned: dict[str, Holdings] | None = None) -> Report:
    """`owned` ({host: its holdings}) when the caller already read them: a lab of hundreds of
    hosts polled for convergence reads each host's holdings once, its kernel every time."""
    hosts = routed_hosts(topo)
    behind = routers(topo)
    if owned is None:
        owned = {node: holdings(topo, node) for node in hosts}
    report = Report(hosts=len(hosts))
    for node in hosts:
        expected = {}
        for owner, held in owned.items():
            if owner == node:
                expected.update({host_prefix(ip): "dev" for ip in held.workloads})
                expected.update({block: "unreachable" for block in held.blocks})
            else:
                via = {v: f"via {address}" for v, address in (behind.get(node) or hosts[owner]).items()}
                expected.update({host_prefix(ip): via[version(ip)] for ip in held.outside})
                expected.update({block: via[version(block)] for block in held.blocks})
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
