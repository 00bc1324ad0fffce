"""What a test sees of a running lab: the kernel's routes, a node's status and sessions, pings,
its processes. Shared by the integration tests (they imported these from one another)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from typing import Any

from bgp import procfs
from tests.lab import Lab

# the reflector-pair lab (labs/dual-rr.clab.yml): each host's first workload, and who pings whom
HEADLESS_HOSTS = {"h1": "10.65.1.1", "h2": "10.65.2.1", "h3": "10.65.3.1", "h4": "10.65.4.1"}
RING = [("h1", "h2"), ("h2", "h3"), ("h3", "h4"), ("h4", "h1")]


def kernel_routes(lab: Lab, node: str, family: int = 4) -> dict[str, str]:
    """{prefix: how} for the node's proto routed routes of one IP version, read from the kernel:
    "unreachable", a gateway (an IPv6 one for an IPv4 route `via inet6`), or a device."""
    out = json.loads(
        subprocess.run(
            ["ip", f"-{family}", "-j", "-n", lab.netns(node), "route", "show", "proto", "201"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    return {r["dst"]: _how(r) for r in out}


def _how(route: dict[str, Any]) -> str:
    if route.get("type") == "unreachable":
        return "unreachable"
    via = route.get("via") or {}
    return str(route.get("gateway") or via.get("host") or route.get("dev", ""))


def route_to(lab: Lab, node: str, ip: str) -> str | None:
    """Where the node's proto routed routes send `ip` by longest match (a gateway, a device, or
    "unreachable"); None if none covers it. With IPAM blocks a remote workload is reached
    through its host's block route, not a /32 of its own."""
    address = ipaddress.ip_address(ip)
    covering = [
        (network.prefixlen, how)
        for dst, how in kernel_routes(lab, node, address.version).items()
        if address in (network := ipaddress.ip_network(dst))
    ]
    return max(covering)[1] if covering else None


def status(lab: Lab, node: str) -> dict[str, Any]:
    """`routed status --json`, asked of the API directly (tests poll it)."""
    return dict(lab.api(node, "status"))


def sessions_up(lab: Lab, node: str) -> list[str]:
    return sorted(p["address"] for p in status(lab, node)["bgp"]["peers"] if p["state"] == "up")


def peer_of(lab: Lab, node: str, address: str) -> dict[str, Any]:
    return next(p for p in status(lab, node)["bgp"]["peers"] if p["address"] == address)


def ping(lab: Lab, node: str, netns: str, address: str) -> bool:
    return (
        lab.exec(node, "ip", "netns", "exec", netns, "ping", "-c1", "-W1", address, check=False).returncode
        == 0
    )


def pids_in(netns: str, needle: str) -> list[int]:
    return procfs.matching(needle, netns=procfs.ns_inode(f"/run/netns/{netns}"))


def daemon_pid(lab: Lab, node: str) -> int:
    (pid,) = pids_in(lab.netns(node), "routed run")
    return pid


def settled(lab: Lab, nodes: list[str]) -> dict[str, Any]:
    """Per node: sessions not up, stale routes, whether BGP is ready (all should be empty/0/True)."""
    out: dict[str, Any] = {}
    for node in nodes:
        try:
            bgp = status(lab, node)["bgp"]
        except Exception as exc:  # its daemon does not answer: say which, and its last words
            out[node] = {"error": repr(exc), "log": lab.log(node).splitlines()[-6:]}
            continue
        out[node] = {
            "down": sorted(p["address"] for p in bgp["peers"] if p["state"] != "up"),
            "stale": bgp["stale"],
            "ready": bgp["ready"],
        }
    return out


def all_settled(nodes: list[str]) -> dict[str, Any]:
    return {node: {"down": [], "stale": 0, "ready": True} for node in nodes}
