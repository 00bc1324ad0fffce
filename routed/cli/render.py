"""What the commands print: tables and summaries from the daemon's (or the kernel's) answers."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def filter_routes(
    routes: list[dict[str, Any]],
    prefix: IPNetwork | None = None,
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
    stale: bool = False,
) -> list[dict[str, Any]]:
    """`routed routes` filters. A prefix keeps itself and what lies inside it; a lone address
    (a /32 or /128 nobody routes as such) keeps the longest route covering it."""
    if stale:
        routes = [r for r in routes if r.get("stale")]
    if peer is not None:
        routes = [r for r in routes if r.get("peer") == str(peer)]
    if prefix is not None:
        nets = [(r, ipaddress.ip_network(r["dst"])) for r in routes]
        nets = [(r, n) for r, n in nets if n.version == prefix.version]
        inside = [r for r, n in nets if n.subnet_of(prefix)]  # type: ignore[arg-type]
        if inside or prefix.prefixlen < prefix.max_prefixlen:
            return inside
        covering = [(n.prefixlen, r) for r, n in nets if prefix.subnet_of(n)]  # type: ignore[arg-type]
        return [max(covering, key=lambda c: c[0])[1]] if covering else []
    return routes


def _hop(hop: dict[str, Any]) -> str:
    """`via G`, `dev D`, or both for a link-local gateway."""
    parts = [f"via {hop['gateway']}"] if "gateway" in hop else []
    return " ".join(parts + ([f"dev {hop['device']}"] if "device" in hop else []))


def route_line(route: dict[str, Any]) -> str:
    hops = " ".join(_hop(h) for h in route["nexthops"]) or route.get("type", "")
    line = f"{route['dst']:<20} {hops:<22}"
    if route.get("source") == "local":
        line += " local workload"
    elif route.get("source") == "bgp":
        paths = route.get("paths", 1)
        best = f"best of {paths}: {route['reason']}" if paths > 1 else route["reason"]
        line += f" bgp from {route['peer']} ({best})"
        if route.get("originator_id"):
            line += f" originator {route['originator_id']} cluster-list {','.join(route['cluster_list'])}"
        if route.get("stale"):
            line += " [stale]" if route["stale"] == "stale" else " [long-lived stale]"
    return line.rstrip()


def print_workloads(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(items, indent=2))
        return
    print(f"{'ID':<24} {'NETNS':<24} {'HOST VETH':<15} IPS")
    for w in items:
        where = w["netns"] or f"({w.get('runtime') or '?'})"  # Docker's sandbox is Docker's to name
        print(f"{w['id']:<24} {where:<24} {w['host_ifname']:<15} {' '.join(w['ips'])}")


RELOAD_LISTS = (
    ("peers_added", "peers added"),
    ("peers_removed", "peers removed (sent a Cease)"),
    ("peers_reset", "sessions reset (their settings or TCP-MD5 key changed)"),
    ("bfd_rekeyed", "BFD sessions given a new key"),
    ("workloads_added", "workloads attached"),
    ("workloads_left_attached", "workloads no longer in the file, left attached (routed workload del)"),
)


def reload_text(result: dict[str, Any]) -> str:
    kernel = [f"  from the kernel: {change}" for change in result.get("kernel") or []]
    if not result["changed"]:
        return "\n".join(["reload: no changes in the file", *kernel]) if kernel else "reload: no changes"
    lines = [f"reload: changed {', '.join(result['changed'])}", *kernel]
    lines += [f"  {label}: {', '.join(result[key])}" for key, label in RELOAD_LISTS if result[key]]
    if result["routes_rejudged"]:
        lines.append("  received routes judged again by the new import policy")
    if result["exports_resent"]:
        lines.append("  announcements sent again with the new export settings")
    return "\n".join(lines)


def print_lab(statuses: list[Any], as_json: bool) -> None:
    if as_json:
        keys = ("name", "netns", "image", "state", "pid")
        items = [
            {**{k: getattr(s, k) for k in keys}, "ipv4": list(s.ipv4), "ipv6": list(s.ipv6)} for s in statuses
        ]
        print(json.dumps(items, indent=2))
        return
    rows = [("#", "NODE", "NETNS", "STATE", "PID", "IPV4", "IMAGE")]
    for index, s in enumerate(statuses, 1):
        rows.append(
            (str(index), s.name, s.netns, s.state, str(s.pid or "-"), ", ".join(s.ipv4) or "-", s.image)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
