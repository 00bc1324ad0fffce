"""What the speaker knows of each configured peer's session, and how it reads in `routed status`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from bgp.model import GracefulRestartCapability
from routed.config import Peer as PeerConfig

HINT_AFTER = 20.0  # seconds without a session before `routed status` and the log say why it may be
RESTART_TIMER = "restart time"  # a GR peer is down: its routes are kept this long
STALEPATH_TIMER = "stalepath time"  # it is back: its End-of-RIB is awaited this long
LONG_LIVED_TIMER = "long-lived stale time"  # past its restart time, kept as long-lived stale


@dataclass(slots=True)
class PeerStatus:
    config: PeerConfig
    state: str = "idle"
    since: float = field(default_factory=time.time)
    router_id: IPv4Address | None = None
    eor: set[str] = field(default_factory=set)  # End-of-RIBs received in this session
    up_in_channel: bool = False
    updates: int = 0
    graceful: GracefulRestartCapability | None = None  # from the peer's last OPEN
    families: frozenset[str] = frozenset({"ipv4 unicast"})
    notified: bool = False  # the peer sent a NOTIFICATION in this session
    eor_sent: bool = False
    stale_until: float | None = None  # wall time its stale paths go (or turn long-lived)
    stale_timer: str = ""  # which of the *_TIMER above runs, if any
    last_error: str = ""
    flaps: int = 0
    pending: bool = False  # added by a reload that ExaBGP has not reported on yet
    over_limit: bool = False  # sent more than its max_prefixes
    held_until: float | None = None  # torn down for max prefixes: down until then (inf: a reload)
    unestablished_since: float = field(default_factory=time.time)  # since it was last up, or first
    md5_baseline: dict[str, int] | None = None  # the kernel's MD5 drop counters when it went down
    hint: str = ""  # why the session may not be coming up
    bfd: str | None = None  # the BFD session's state ("up", "down", "init"), if it has one

    @property
    def held_down(self) -> bool:
        return self.held_until is not None

    def _limit_json(self) -> dict[str, Any] | None:
        limit = self.config.max_prefixes
        if limit is None:
            return None
        until = self.held_until
        return {
            "limit": limit.limit,
            "action": limit.action.value,
            "over": self.over_limit,
            "held_down_until": None
            if until is None
            else (round(until, 3) if until != float("inf") else "reload"),
        }

    def json(
        self,
        now: float,
        *,
        asn: int,
        graceful_locally: bool,
        received: int,
        accepted: int,
        announced: int,
        stale: int,
        rejections: Mapping[str, int],
    ) -> dict[str, Any]:
        return {
            "address": str(self.config.address),
            "description": self.config.description,
            "kind": self.config.kind.value,
            "asn": asn,
            "state": self.state,
            "since": round(self.since, 3),
            "router_id": str(self.router_id) if self.router_id else None,
            "received": received,
            "accepted": accepted,
            "rejected": received - accepted,  # held now but refused by import policy
            "rejections": dict(rejections),  # refusals since start, by reason
            "updates": self.updates,  # UPDATE messages received this session and before
            "announced": announced,
            "eor": sorted(self.eor),
            "eor_sent": self.eor_sent,
            "flaps": self.flaps,
            "last_error": self.last_error,
            "hint": self.hint,
            "bfd": self.bfd,
            "max_prefixes": self._limit_json(),
            "graceful_restart": {
                "local": graceful_locally,
                "peer_restart_time": self.graceful.restart_time if self.graceful else None,
                "negotiated": graceful_locally and self.graceful is not None,
                "helper_active": self.stale_timer == RESTART_TIMER,
                "stale": stale,
                "timer": self.stale_timer or None,
                "timer_left_s": round(max(0.0, self.stale_until - now), 1) if self.stale_until else None,
            },
        }


def establish_hint(
    uses_md5: bool, down_for: float, md5_drops: dict[str, int], uses_gtsm: bool = False
) -> str:
    """What to tell an operator about a session that has not come up for `down_for` seconds,
    given how many segments the kernel dropped for MD5 reasons meanwhile (TcpExt counters)."""
    if down_for < HINT_AFTER:
        return ""
    hint = _md5_hint(uses_md5, md5_drops)
    if uses_gtsm:
        hint += (
            "; it also uses TTL security (GTSM): a peer that does not send with TTL 255, or is more "
            "than one hop away, is dropped by the kernel just as silently"
        )
    return hint


def _md5_hint(uses_md5: bool, md5_drops: dict[str, int]) -> str:
    bad = md5_drops.get("TCPMD5Failure", 0) + md5_drops.get("TCPMD5NotFound", 0)
    unexpected = md5_drops.get("TCPMD5Unexpected", 0)
    if uses_md5 and bad:
        return (
            f"not coming up: this host's kernel dropped {bad} segments with a wrong or missing TCP-MD5 "
            "signature meanwhile (TCPMD5Failure/TCPMD5NotFound): check that both sides have the same password"
        )
    if not uses_md5 and unexpected:
        return (
            f"not coming up: this host's kernel dropped {unexpected} segments signed with TCP-MD5 "
            "meanwhile (TCPMD5Unexpected): the peer has a password set and we have none"
        )
    if uses_md5:
        return (
            "not coming up: this session uses TCP-MD5, and a password that differs from the peer's "
            "looks exactly like this (the kernel drops such segments silently); or the peer is down"
        )
    return (
        "not coming up: no answer from the peer; it may be down or unreachable, or expect a TCP-MD5 "
        "password (the kernel drops unsigned segments silently)"
    )
