"""The speaker's status as `routed status --json` shows it: typed records, no behaviour."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


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
    range: str | None  # the range it connected from (a client not listed by address)
    registered: bool  # a client from the node registry (etcd)
    forget_in_s: float | None  # such a client that left: when it is forgotten
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


class FamilyCounts(TypedDict):
    loc_rib: int  # prefixes with a best path
    stale: int  # of those, whose best path is kept through a restart
    announced: int  # our own prefixes


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
    families: dict[str, FamilyCounts]  # "ipv4 unicast", "ipv6 unicast"
