"""How workloads and routes look on the API and in `--json` output.

Kept free of heavy imports: the CLI loads it on every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from routed.config import NodeConfig
    from routed.dataplane.workload import WorkloadSpec
    from routed.fib.routes import Route
    from routed.ipam.backends import Ipam


def workload_json(spec: WorkloadSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "netns": spec.netns,
        "ips": [str(ip) for ip in spec.ips],
        "ifname": spec.ifname,
        "host_ifname": spec.host_ifname,
        "runtime": spec.runtime or None,
        "network": spec.network or None,
    }


def route_json(route: Route) -> dict[str, Any]:
    out: dict[str, Any] = {
        "dst": str(route.dst),
        "table": route.table,
        "nexthops": [
            {
                **({"gateway": str(h.gateway)} if h.gateway is not None else {}),
                **({"device": h.device} if h.device is not None else {}),
            }
            for h in route.nexthops
        ],
    }
    if route.unreachable:
        out["type"] = "unreachable"
    return out


def ipam_json(cfg: NodeConfig, ipam: Ipam, workloads: Iterable[WorkloadSpec]) -> dict[str, Any]:
    """The node's blocks, how full each is, and the addresses it hosts outside them."""
    from routed.ipam import blocks

    hosted = [ip for w in workloads for ip in w.ips]
    owned = ipam.owned_blocks()
    return {
        "mode": cfg.ipam.mode.value,
        "block_size": cfg.ipam.block_size,
        "block_size_v6": cfg.ipam.block_size_v6,
        "blocks": [
            {
                "block": str(b),
                "used": blocks.in_use(b, hosted),
                "size": len(blocks.usable(b, cfg.pool_networks)),
            }
            for b in owned
        ],
        "outside_blocks": sorted(str(ip) for ip in hosted if blocks.containing(ip, owned) is None),
        "addresses": sorted(str(ip) for ip in hosted),
    }


def ipam_text(ipam: dict[str, Any]) -> str:
    used = ", ".join(f"{b['block']} ({b['used']}/{b['size']} used)" for b in ipam["blocks"]) or "none"
    line = f"ipam {ipam['mode']}: blocks {used}" if ipam["mode"] != "none" else "ipam none: /32 per workload"
    if ipam["outside_blocks"] and ipam["mode"] != "none":
        line += f"; announced as /32 (outside our blocks): {', '.join(ipam['outside_blocks'])}"
    return line


def human_duration(seconds: float) -> str:
    """3m12s, 2h05m, 4d01h: short enough for a table column."""
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def status_text(status: dict[str, Any], now: float | None = None) -> str:
    """`routed status` for people: the node, one row per peer (like `birdc show protocols`), the FIB."""
    import time

    now = time.time() if now is None else now
    bgp = status["bgp"]
    exabgp = bgp["exabgp"]
    headless = "HEADLESS" if bgp.get("headless_since") else "no"
    lines = [
        f"node {status['node']}  role {status['role']}  router-id {status.get('router_id', '?')}  "
        f"AS {status.get('asn', '?')}  up {human_duration(now - status.get('started', now))}  "
        f"routed {status.get('version', '?')}",
        f"exabgp pid {exabgp['pid'] or '-'} restarts {exabgp['restarts']}  "
        f"bgp {'ready' if bgp['ready'] else 'waiting for End-of-RIB'}  headless {headless}"
        + ("  DRAINING (graceful shutdown)" if bgp.get("draining") else "")
        + (f"  stale routes {bgp['stale']}" if bgp.get("stale") and not bgp.get("headless_since") else ""),
    ]
    if bgp.get("headless_since"):
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(bgp["headless_since"]))
        lines.append(
            f"HEADLESS since {since} ({human_duration(now - bgp['headless_since'])}), "
            f"{bgp.get('stale', 0)} stale routes: no reflector is up; forwarding on kept routes"
        )
    families = bgp.get("families") or {}
    if any(c["loc_rib"] or c["announced"] for c in families.values()):
        lines.append(
            "  ".join(
                f"{name.split()[0]}: best paths {c['loc_rib']}, ours {c['announced']}"
                + (f", stale {c['stale']}" if c["stale"] else "")
                for name, c in families.items()
            )
        )
    if "ipam" in status:
        lines.append(ipam_text(status["ipam"]))
    conflicts = bgp.get("conflicts") or {}
    if conflicts.get("current"):
        listed = "; ".join(f"{c['prefix']} ({', '.join(c['nodes'])}: {c['kind']})" for c in conflicts["list"])
        lines.append(f"ADDRESS CONFLICTS {conflicts['current']}: {listed}")
    lines.append("")
    header = "PEER DESCRIPTION KIND AS STATE SINCE RECV ACC REJ SENT GR STALE INFO"
    rows: list[tuple[str, ...]] = [tuple(header.split())]
    for peer in bgp["peers"]:
        gr = peer.get("graceful_restart", {})
        if not gr:
            gr_text, info = "-", ""
        else:
            gr_text = "yes" if gr["negotiated"] else ("off" if not gr["local"] else "no")
            info = ""
            if gr.get("timer") == "restart time":
                info = f"helping its restart, {gr['timer_left_s']:.0f}s left"
            elif gr.get("timer") == "long-lived stale time":
                info = f"past its restart time: long-lived stale, {human_duration(gr['timer_left_s'])} left"
            elif gr.get("timer"):
                info = f"awaiting its End-of-RIB, {gr['timer_left_s']:.0f}s left"
        if peer.get("bfd") not in (None, "up"):
            last, refused = peer.get("bfd_last_refused"), peer.get("bfd_refused") or {}
            bfd = f"BFD {peer['bfd']}" + (
                f", refusing its packets: {last} ({refused.get(last, 0)})" if last else ""
            )
            info = f"{bfd}; {info}" if info else bfd
        limit = peer.get("max_prefixes")
        if limit and limit["over"] and peer["state"] == "up":
            info = f"over max_prefixes {limit['limit']} ({limit['action']})"
        if peer.get("forget_in_s") is not None:
            left = f"left: forgotten in {peer['forget_in_s']:.0f}s"
            info = f"{info}; {left}" if info else left
        if peer["state"] != "up":
            for why in (peer.get("last_error"), peer.get("hint")):
                if why and not (why.startswith("BFD") and info.startswith("BFD")):
                    info = f"{info}; {why}" if info else why
        rows.append(
            (
                peer["address"],
                peer.get("description") or "-",
                peer["kind"]
                + (f" ({peer['range']})" if peer.get("range") else "")
                + (" (registry)" if peer.get("registered") else ""),
                str(peer["asn"]),
                peer["state"],
                human_duration(now - peer["since"]),
                str(peer["received"]),
                str(peer.get("accepted", peer["received"])),
                str(peer.get("rejected", 0)),
                str(peer.get("announced", "-")),
                gr_text,
                str(gr.get("stale", 0)) if gr else "-",
                info,
            )
        )
    lines += _table(rows) if bgp["peers"] else ["no BGP peers configured"]
    lines += ["", fib_text(status["fib"])]
    if "workloads" in status:
        lines.append(f"workloads {status['workloads']}  metrics {status.get('metrics', 'off')}")
    if "firewall" in status:
        lines.append(firewall_text(status["firewall"]))
        lines.append(nat_text(status["firewall"].get("nat") or []))
    if "mtu" in status:
        lines.append(mtu_text(status["mtu"]))
    return "\n".join(lines)


def nat_text(pools: list[dict[str, Any]]) -> str:
    """nat outgoing: 10.65.0.0/16 masquerade (2 connections, 12 packets, 1008 bytes NATed); ..."""
    parts = []
    for pool in pools:
        if not pool["nat_outgoing"]:
            parts.append(f"{pool['pool']} off")
            continue
        how = pool["mode"] + (f" ports {pool['ports']}" if pool.get("ports") else "")
        if pool.get("exclude"):
            how += f" except to {', '.join(pool['exclude'])}"
        counts = f"{pool['connections']} connections, {pool['packets']} packets, {pool['bytes']} bytes NATed"
        parts.append(f"{pool['pool']} {how} ({counts})")
    return "nat outgoing: " + ("; ".join(parts) or "no pools")


def mtu_text(mtu: dict[str, Any]) -> str:
    """mtu: 9000 for workload veths (fabric eth1's)"""
    if mtu.get("workloads") is None:
        return f"mtu: the kernel's default for workload veths ({mtu['source']} not found)"
    line = f"mtu: {mtu['workloads']} for workload veths ({mtu['source']}"
    if mtu["source"] == "mtu:" and mtu.get("fabric"):
        line += f"; the fabric's is {mtu['fabric']}"
    return line + ")"


def firewall_text(firewall: dict[str, Any]) -> str:
    """firewall: table inet routed, 2 workload veths checked; dropped: spoofed source 10, ..."""
    if firewall.get("error"):
        return (
            f"firewall: NOT ENFORCED ({firewall['error']}): IPv6 sources from workloads unchecked, "
            "IPv4 by rp_filter only"
        )
    dropped = ", ".join(f"{why} {n}" for why, n in sorted((firewall.get("dropped") or {}).items()))
    line = (
        f"firewall: table {firewall['table']}, {firewall['workload_interfaces']} workload veths checked"
        f"; dropped: {dropped or 'nothing'}; restored {firewall.get('restored', 0)} times"
    )
    for chain in firewall.get("forward_drops") or []:
        line += (
            f"\nWARNING: {chain} drops forwarded packets by default (Docker does that when it "
            "starts before routed): workloads' traffic across hosts and out is forwarded only if "
            "its rules accept it. Start routed before dockerd, or: "
            "iptables -I DOCKER-USER -i rt+ -j ACCEPT; iptables -I DOCKER-USER -o rt+ -j ACCEPT"
        )
    return line


def fib_text(fib: dict[str, Any]) -> str:
    """fib: 14 routes in the kernel (workload 2, block 1, bgp 11), synced; and what was done so far."""
    routes = fib.get("routes") or {}
    by_origin = ", ".join(f"{origin} {n}" for origin, n in routes.items() if n or origin != "leftover")
    line = f"fib: {sum(routes.values())} routes in the kernel ({by_origin or 'none'})" if routes else "fib:"
    if "synced" in fib:
        line += ", synced" if fib["synced"] else ", NOT synced (changes pending or a source not ready)"
    counts = ("added", "replaced", "deleted", "failures", "restored", "full_resyncs")
    line += "; " + ", ".join(f"{fib.get(k, 0)} {k.replace('_', ' ')}" for k in counts)
    for reason, routes_now in sorted((fib.get("failing") or {}).items()):
        line += f"\n  {routes_now} route(s) refused by the kernel now: {reason}"
    return line
