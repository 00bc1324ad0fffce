"""One configured peer and everything the speaker keeps of it (GoBGP's `peer`, BIRD's channel).

A Neighbor owns its session's state as ExaBGP reports it, its Adj-RIB-Out (what it has been
sent), its refusals by reason, its max-prefix state and hold-down, what its graceful restart
capability allows, and its one stale timer. The RIB (every peer's Adj-RIB-In and the best
paths) is shared and lives in bgp.rib; the rules that move routes on a neighbor's events are
bgp.helper's, bgp.limits' and bgp.export's. Time comes from an injected Clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address
from typing import Any

from bgp import limits
from bgp.clock import Clock, Timer
from bgp.config import NeighborConfig
from bgp.model import Export, GracefulRestartCapability, IPAddress, IPNetwork, PeerOpen
from bgp.records import PeerJson

RESTART_TIMER = "restart time"  # a GR peer is down: its routes are kept this long
STALEPATH_TIMER = "stalepath time"  # it is back: its End-of-RIB is awaited this long
LONG_LIVED_TIMER = "long-lived stale time"  # past its restart time, kept as long-lived stale


class Transition(Enum):
    UP = "up"
    DOWN = "down"  # an established session (or one up in this channel) ended
    NONE = "none"  # connecting, idle again, a repeat


@dataclass(frozen=True, slots=True)
class LimitVerdict:
    kept: tuple[limits.Announcement, ...]  # what of the UPDATE goes into the RIB
    held: int  # prefixes it would hold with all it sent
    crossed: bool = False  # over its max_prefixes just now (act once)
    cleared: bool = False  # back under it


class Neighbor:
    def __init__(self, config: NeighborConfig, clock: Clock, *, pending: bool = False) -> None:
        now = clock.time()
        self.config = config
        self.clock = clock
        self.state = "idle"
        self.since = now
        self.router_id: IPv4Address | None = None
        self.eor: set[str] = set()  # End-of-RIBs received in this session
        self.eor_sent = False  # ours, in this session
        self.up_in_channel = False  # up since our current ExaBGP started
        self.updates = 0  # UPDATE messages received, all sessions
        self.graceful: GracefulRestartCapability | None = None  # from its last OPEN
        self.families: frozenset[str] = frozenset({"ipv4 unicast"})
        self.notified = False  # it sent a NOTIFICATION in this session
        self.last_error = ""
        self.flaps = 0
        self.pending = pending  # added by a reload that ExaBGP has not reported on yet
        self.over_limit = False  # holds more than its max_prefixes
        self.held_until: float | None = None  # torn down for max prefixes: until then (inf: reload)
        self.unestablished_since = now  # since it was last up, or first configured
        self.md5_baseline: dict[str, int] | None = None  # kernel MD5 drop counters when it went down
        self.hint = ""  # why its session may not be coming up
        self.bfd: str | None = None  # its BFD session's state, if it has one
        self.adj_rib_out: dict[IPNetwork, Export] = {}
        self.export_kind: tuple[NeighborConfig, int] | None = None  # bgp.export's, for this config
        self.rejections: Counter[str] = Counter()  # refused prefixes since start, by reason
        self.stale_timer = ""  # which *_TIMER runs, if any
        self.stale_until: float | None = None  # wall time it fires
        self._stale_handle: Timer | None = None
        self.forget_at: float | None = None  # a range's client that left: when it is forgotten
        self._forget_handle: Timer | None = None

    @property
    def address(self) -> IPAddress:
        return self.config.address

    @property
    def up(self) -> bool:
        return self.state == "up"

    @property
    def held_down(self) -> bool:
        return self.held_until is not None

    # --- the session -------------------------------------------------------------------

    def opened(self, ev: PeerOpen) -> None:
        self.router_id = ev.router_id
        self.graceful, self.families = ev.graceful_restart, ev.families
        self.notified = False

    def state_changed(self, state: str, reason: str = "") -> Transition:
        previous, now = self.state, self.clock.time()
        self.state, self.since = state, now
        if state == "up" or previous == "up":
            self.unestablished_since, self.md5_baseline, self.hint = now, None, ""
        if state == "up":
            self.up_in_channel, self.eor_sent = True, False
            self.eor.clear()
            return Transition.UP
        if state == "down" and (self.up_in_channel or previous == "up"):
            self.up_in_channel = False
            self.flaps += 1
            if reason and not self.notified:
                self.last_error = reason
            return Transition.DOWN
        return Transition.NONE

    def notification(self, code: int, subcode: int, data: str) -> None:
        self.notified = True
        self.last_error = f"NOTIFICATION {code}/{subcode} received {data}".strip()

    def channel_opened(self) -> None:
        """A new ExaBGP: no session of ours is up in it yet, no End-of-RIB either way."""
        self.up_in_channel = self.eor_sent = False
        self.eor.clear()

    def channel_lost(self) -> None:
        """Our ExaBGP died, and the session with it."""
        now = self.clock.time()
        if self.up:
            self.unestablished_since, self.md5_baseline = now, None
        self.state, self.up_in_channel, self.since, self.notified = "idle", False, now, False

    def restarting(self) -> bool:
        """Up, and its OPEN said it is restarting (the Restart State bit)."""
        return self.up and self.graceful is not None and self.graceful.restarted

    # --- its one stale timer ----------------------------------------------------------

    def arm_stale_timer(self, seconds: float, kind: str, on_expiry: Callable[[Neighbor, str], None]) -> None:
        self.cancel_stale_timer()
        self._stale_handle = self.clock.call_later(seconds, self._stale_fired, kind, on_expiry)
        self.stale_until, self.stale_timer = self.clock.time() + seconds, kind

    def cancel_stale_timer(self) -> None:
        if self._stale_handle is not None:
            self._stale_handle.cancel()
        self._stale_handle, self.stale_until, self.stale_timer = None, None, ""

    def _stale_fired(self, kind: str, on_expiry: Callable[[Neighbor, str], None]) -> None:
        self._stale_handle, self.stale_until, self.stale_timer = None, None, ""
        on_expiry(self, kind)

    # --- a range's client: forgotten some time after it left (bgp.dynamic) ------------

    @property
    def dynamic(self) -> bool:
        return self.config.from_range is not None

    def arm_forget(self, seconds: float, on_expiry: Callable[[Neighbor], None]) -> None:
        self.cancel_forget()
        self._forget_handle = self.clock.call_later(seconds, on_expiry, self)
        self.forget_at = self.clock.time() + seconds

    def cancel_forget(self) -> None:
        if self._forget_handle is not None:
            self._forget_handle.cancel()
        self._forget_handle, self.forget_at = None, None

    # --- max prefixes and hold-down ---------------------------------------------------

    def admit(
        self,
        announced: Sequence[limits.Announcement],
        withdrawn: Sequence[IPNetwork],
        held: Collection[IPNetwork],
        held_by_family: Mapping[int, int] | None = None,
    ) -> LimitVerdict:
        """What of an UPDATE its max_prefixes lets in, given what it holds (in all, and by IP
        version: the limit is each family's); a crossing is told once."""
        limit = self.config.max_prefixes
        if limit is None:
            return LimitVerdict(tuple(announced), len(held))
        if withdrawn:
            if held_by_family is not None:
                counts = dict(held_by_family)
                for prefix in withdrawn:
                    if prefix in held:
                        counts[prefix.version] -= 1
                held_by_family = counts
            held = set(held) - set(withdrawn)
        verdict = limits.admit(limit, held, announced, held_by_family)
        if verdict.dropped:
            self.rejections["max prefixes"] += verdict.dropped
        if verdict.exceeded and not self.over_limit:
            self.over_limit = True
            return LimitVerdict(verdict.kept, verdict.held, crossed=True)
        if not verdict.exceeded and self.over_limit and not self.held_down:
            self.over_limit = False
            return LimitVerdict(verdict.kept, verdict.held, cleared=True)
        return LimitVerdict(verdict.kept, verdict.held)

    def hold_down(self, seconds: int) -> None:
        """Out of ExaBGP's config for `seconds` (0: until a reload); all it was sent is forgotten,
        as ExaBGP forgets the neighbour: everything is sent again when it is back."""
        self.held_until = self.clock.time() + seconds if seconds else float("inf")
        self.pending, self.adj_rib_out = True, {}

    def release(self) -> bool:
        if not self.held_down:
            return False
        self.held_until, self.over_limit = None, False
        return True

    def count_rejection(self, reason: str) -> int:
        """One more refusal for `reason`: how many so far."""
        self.rejections[reason] += 1
        return self.rejections[reason]

    # --- how it reads in `routed status` ----------------------------------------------

    def _limit_json(self) -> dict[str, Any] | None:
        limit, until = self.config.max_prefixes, self.held_until
        if limit is None:
            return None
        return {
            "limit": limit.limit,
            "action": limit.action.value,
            "over": self.over_limit,
            "held_down_until": None
            if until is None
            else (round(until, 3) if until != float("inf") else "reload"),
        }

    def json(self, *, received: int, accepted: int, stale: int) -> PeerJson:
        now, graceful_locally = self.clock.time(), self.config.graceful_restart
        return {
            "address": str(self.config.address),
            "range": str(self.config.from_range) if self.config.from_range is not None else None,
            "registered": self.config.registered,
            "forget_in_s": round(max(0.0, self.forget_at - now), 1) if self.forget_at else None,
            "description": self.config.description,
            "kind": self.config.kind.value,
            "asn": self.config.asn,
            "state": self.state,
            "since": round(self.since, 3),
            "router_id": str(self.router_id) if self.router_id else None,
            "received": received,
            "accepted": accepted,
            "rejected": received - accepted,  # held now but refused by import policy
            "rejections": dict(self.rejections),  # refusals since start, by reason
            "updates": self.updates,  # UPDATE messages received this session and before
            "announced": len(self.adj_rib_out),
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
