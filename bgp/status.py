"""How the speaker reads in `routed status`, `routed routes` and to IPAM. Pure over its parts."""

from __future__ import annotations

from ipaddress import ip_network
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from bgp.config import SpeakerConfig
from bgp.model import IPAddress, IPNetwork
from bgp.rib import Rib

if TYPE_CHECKING:
    from bgp.speaker import Speaker


class GracefulRestartJson(TypedDict):
    local: bool
    peer_restart_time: int | None
    negotiated: bool
    helper_active: bool
    stale: int
    timer: str | None
    timer_left_s: float | None


class PeerJson(TypedDict):
    """One peer in `routed status --json` (bgp.peers[]) and the metrics made of it."""

    address: str
    description: str
    kind: str
    asn: int
    state: str
    since: float
    router_id: str | None
    received: int
    accepted: int
    rejected: int  # held now but refused by import policy
    rejections: dict[str, int]  # refusals since start, by reason
    updates: int  # UPDATE messages received this session and before
    announced: int
    eor: list[str]
    eor_sent: bool
    flaps: int
    last_error: str
    hint: str
    bfd: str | None
    max_prefixes: dict[str, Any] | None
    graceful_restart: GracefulRestartJson
    bfd_refused: NotRequired[dict[str, int]]  # the node's BFD process adds these
    bfd_last_refused: NotRequired[str | None]


class ExabgpJson(TypedDict):
    pid: int | None
    restarts: int


class SpeakerStatus(TypedDict):
    peers: list[PeerJson]
    loc_rib: int
    announced: int
    stale: int
    draining: bool
    headless_since: float | None
    rejected: dict[str, int]
    conflicts: dict[str, Any]  # bgp.conflicts' own
    counters: dict[str, int]
    exabgp: ExabgpJson
    ready: bool


def speaker_status(speaker: Speaker) -> SpeakerStatus:
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
    }


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
