"""How the speaker reads in `routed status`, `routed routes` and to IPAM. Pure over its parts."""

from __future__ import annotations

import asyncio
from collections import Counter
from ipaddress import ip_network
from typing import Any, Protocol

from bgp.config import SpeakerConfig
from bgp.exabgp.bridge import ExaBgpBridge
from bgp.model import IPAddress, IPNetwork
from bgp.neighbor import Neighbor
from bgp.records import FamilyCounts, SpeakerStatus
from bgp.reports import RouteReports
from bgp.restart import RestartCoordinator
from bgp.rib import Rib


class Observed(Protocol):
    """What the status is read from (bgp.speaker.Speaker)."""

    rib: Rib
    neighbors: dict[IPAddress, Neighbor]
    local: set[IPNetwork]
    restart: RestartCoordinator
    reports: RouteReports
    counters: Counter[str]
    exabgp: ExaBgpBridge
    ready: asyncio.Event

    @property
    def draining(self) -> bool: ...


def speaker_status(speaker: Observed) -> SpeakerStatus:
    rib = speaker.rib
    peers = [
        n.json(
            received=rib.received_count(address),
            accepted=rib.accepted_count(address),
            stale=rib.stale_count(address),
        )
        for address, n in speaker.neighbors.items()
    ]
    headless_since = speaker.restart.headless_since
    return {
        "peers": peers,
        "loc_rib": rib.loc_rib_size(),
        "announced": len(speaker.local),
        "stale": rib.stale_count(),
        "draining": speaker.draining,
        "headless_since": round(headless_since, 3) if headless_since else None,
        "rejected": {r.value: n for r, n in rib.rejected_total.items()},
        "conflicts": speaker.reports.conflicts_json(list(speaker.neighbors)),
        "counters": dict(speaker.counters),
        "exabgp": {"pid": speaker.exabgp.pid, "restarts": speaker.exabgp.restarts},
        "ready": speaker.ready.is_set(),
        "families": family_counts(rib, speaker.local),
    }


def family_counts(rib: Rib, local: set[IPNetwork]) -> dict[str, FamilyCounts]:
    counts = {v: FamilyCounts(loc_rib=0, stale=0, announced=0) for v in (4, 6)}
    for prefix, selection in rib.loc_rib().items():
        family = counts[prefix.version]
        family["loc_rib"] += 1
        family["stale"] += 1 if selection.best.stale else 0
    for prefix in local:
        counts[prefix.version]["announced"] += 1
    return {f"ipv{v} unicast": c for v, c in counts.items()}


def block_owner(rib: Rib, cfg: SpeakerConfig, ip: IPAddress) -> tuple[IPNetwork, str] | None:
    """Who else announces a block holding `ip`: (the block, that node's next hop).
    A /32 announced by another node is not an owner: the same address on several hosts
    can be anycast on purpose (and is reported as a conflict, not refused)."""
    prefix = ip_network((ip, cfg.block_length(ip.version)), strict=False)
    selection = rib.selection(prefix)
    return (prefix, str(selection.best.attrs.next_hop)) if selection is not None else None


def route_details(rib: Rib, prefix: IPNetwork) -> dict[str, Any] | None:
    selection = rib.selection(prefix)
    if selection is None:
        return None
    best = selection.best
    return {
        "source": "bgp",
        "peer": str(best.peer.address),
        "reason": selection.reason.value,
        "paths": len(rib.paths(prefix)),  # accepted candidates the best was chosen from
        "next_hops": [str(h) for h in selection.next_hops],
        "as_path": [a for seg in best.attrs.as_path for a in seg.asns],
        "local_pref": best.attrs.local_pref,
        "med": best.attrs.med,
        "communities": [f"{a}:{b}" for a, b in best.attrs.communities],
        "originator_id": str(best.attrs.originator_id) if best.attrs.originator_id else None,
        "cluster_list": [str(c) for c in best.attrs.cluster_list],
        "stale": best.stale.name.lower() if best.stale else None,
    }
