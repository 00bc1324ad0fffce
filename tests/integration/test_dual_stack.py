"""Dual stack across hosts (issue 27): every container's /32 and /128 reaches every other host,
on a dual-stack fabric (each family over its own sessions) and on an IPv6-only fabric (IPv4 over
the IPv6 sessions with IPv6 next hops, RFC 8950). Pings counted in the target container's
kernel; no tunnel device anywhere."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from tests.lab import Lab, running_lab
from tests.netns import wait_until
from tests.support.fabric import route_to, status
from tests.traffic import echoes

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

HOSTS = ("h1", "h2", "h3")
V4_FABRIC = {"h1": "10.0.0.11", "h2": "10.0.0.12", "h3": "10.0.0.13"}
V6_FABRIC = {"h1": "fd00:0:0:1::11", "h2": "fd00:0:0:1::12", "h3": "fd00:0:0:1::13"}
TUNNELS = {"vxlan", "ipip", "gre", "geneve", "sit", "wireguard", "ip6tnl", "ip6gre"}
COUNT = 5


def workloads(lab: Lab, node: str) -> list[dict[str, Any]]:
    return list(json.loads(lab.exec(node, "routed", "workload", "list", "--json").stdout))


def address_of(workload: dict[str, Any], version: int) -> str:
    (address,) = [ip for ip in workload["ips"] if (":" in ip) == (version == 6)]
    return str(address)


def containers(lab: Lab) -> list[tuple[str, str, dict[int, str]]]:
    """(host, container netns, {4: its IPv4 address, 6: its IPv6 address}) of every container."""
    return [
        (node, w["netns"], {4: address_of(w, 4), 6: address_of(w, 6)})
        for node in HOSTS
        for w in workloads(lab, node)
    ]


def learned_all(
    lab: Lab, found: list[tuple[str, str, dict[int, str]]], gateways: dict[int, dict[str, str]]
) -> bool:
    """Every host routes every other host's containers, each family via `gateways[family][host]`."""
    return all(
        route_to(lab, node, ips[version]) == gateways[version][owner]
        for node in HOSTS
        for owner, _, ips in found
        if owner != node
        for version in (4, 6)
    )


def cross_host_pings(lab: Lab, found: list[tuple[str, str, dict[int, str]]]) -> dict[str, tuple[int, int]]:
    """Every ordered pair of containers on different hosts, each family: (answered, arrived)."""
    results = {}
    for (src_node, src, src_ips), (dst_node, dst, dst_ips) in itertools.permutations(found, 2):
        if src_node == dst_node:
            continue
        for version in (4, 6):
            pair = f"{src_node}/{src} -> {dst_node}/{dst} IPv{version}"
            results[pair] = echoes(
                lab, (src_node, src), (dst_node, dst), dst_ips[version], COUNT, src_ips[version]
            )
    return results


def tunnels(lab: Lab) -> list[str]:
    found = []
    for node in ("rr1", *HOSTS):
        links = json.loads(lab.exec(node, "ip", "-d", "-j", "link", "show").stdout)
        found += [
            f"{node}:{link['ifname']}"
            for link in links
            if link.get("linkinfo", {}).get("info_kind") in TUNNELS
        ]
    return found


def sessions_up(lab: Lab, node: str) -> set[str]:
    return {p["address"] for p in status(lab, node)["bgp"]["peers"] if p["state"] == "up"}


def check_fabric(lab: Lab, gateways: dict[int, dict[str, str]], peers: dict[str, set[str]]) -> None:
    for node, expected in peers.items():
        wait_until(lambda n=node: sessions_up(lab, n), expected, timeout=40, what=f"{node}'s sessions")
    found = containers(lab)
    assert len(found) == 6, found
    wait_until(
        lambda: learned_all(lab, found, gateways), timeout=40, what="every host routes every container"
    )
    results = cross_host_pings(lab, found)
    assert len(results) == 2 * 6 * 4, results  # 24 ordered pairs on different hosts, both families
    failed = {pair: counts for pair, counts in results.items() if counts != (COUNT, COUNT)}
    assert not failed, failed
    assert tunnels(lab) == []


@pytest.mark.long(40)
def test_dual_stack_fabric_carries_both_families_over_their_own_sessions() -> None:
    with running_lab("dual-stack") as lab:
        clients = {*V4_FABRIC.values(), *V6_FABRIC.values()}
        peers = {"rr1": clients, **{h: {"10.0.0.1", "fd00:0:0:1::1"} for h in HOSTS}}
        check_fabric(lab, {4: V4_FABRIC, 6: V6_FABRIC}, peers)


@pytest.mark.long(40)
def test_ipv6_only_fabric_carries_ipv4_with_ipv6_next_hops() -> None:
    with running_lab("v6-underlay") as lab:
        peers = {"rr1": set(V6_FABRIC.values()), **{h: {"fd00:0:0:1::1"} for h in HOSTS}}
        # IPv4 routes are installed `via inet6 <the host's fabric address>` (RTA_VIA)
        check_fabric(lab, {4: V6_FABRIC, 6: V6_FABRIC}, peers)
        assert "via inet6 fd00:0:0:1::12" in lab.exec("h1", "ip", "route", "show", "10.65.2.0/26").stdout
