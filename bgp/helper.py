"""Graceful restart (RFC 4724), the helper's side: a peer's paths through its restart.

A peer whose session drops without a NOTIFICATION keeps its paths in the RIB and the FIB,
marked stale, for the restart time it advertised; its new session's UPDATEs make them fresh
again and its End-of-RIB sweeps the rest. When our own ExaBGP dies, every peer's paths are
kept the same way. The decisions are bgp.graceful's; this applies them to the shared RIB and
to each neighbor's stale timer, and returns the best-path changes. A timer that fires hands
its changes to `program`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from bgp import graceful
from bgp.config import RestartTimers
from bgp.events import event
from bgp.model import PeerOpen, PeerState, Staleness
from bgp.neighbor import LONG_LIVED_TIMER, RESTART_TIMER, STALEPATH_TIMER, Neighbor, Transition
from bgp.rib import Changes, Rib

log = logging.getLogger("bgp.speaker")


class GracefulHelper:
    def __init__(self, rib: Rib, timers: RestartTimers, program: Callable[[Changes], None]) -> None:
        self.rib = rib
        self.timers = timers  # a reload may replace them
        self.program = program

    def opened(self, neighbor: Neighbor, ev: PeerOpen) -> Changes:
        """RFC 4724 4.2: a peer back without forwarding state for a family lost those routes."""
        neighbor.opened(ev)
        changes: Changes = {}
        if not self.rib.stale_count(neighbor.address):
            return changes
        capability = ev.graceful_restart if neighbor.config.graceful_restart else None
        for version in sorted(graceful.versions_without_forwarding(capability)):
            swept = self.rib.sweep_stale(neighbor.address, version)
            if swept:
                changes.update(swept)
                log.warning(
                    event(
                        "bgp_stale_flushed",
                        peer=neighbor.address,
                        ipv=version,
                        routes=len(swept),
                        reason="no forwarding state",
                    )
                )
        self._settled(neighbor)
        return changes

    def session(self, neighbor: Neighbor, ev: PeerState, changes: Changes) -> bool:
        """ExaBGP reports the session's state: whether it came up or went down."""
        transition = neighbor.state_changed(ev.state, ev.reason)
        if transition is Transition.UP:
            stale = self.came_up(neighbor)
            log.info(
                event(
                    "bgp_session_up", peer=ev.peer, asn=ev.peer_asn, router_id=neighbor.router_id, stale=stale
                )
            )
        elif transition is Transition.DOWN:
            changes.update(self.went_down(neighbor, ev.reason))
        return transition is not Transition.NONE

    def came_up(self, neighbor: Neighbor) -> int:
        """Back from its restart: now its End-of-RIB is awaited, for the stalepath time.
        How many of its paths are stale."""
        stale = self.rib.stale_count(neighbor.address)
        if stale:
            neighbor.arm_stale_timer(self.timers.stalepath_time, STALEPATH_TIMER, self._expired)
        return stale

    def went_down(self, neighbor: Neighbor, reason: str) -> Changes:
        verdict = graceful.on_session_down(
            neighbor.graceful, neighbor.config.graceful_restart, neighbor.notified
        )
        neighbor.notified = False
        if verdict.action is graceful.DownAction.KEEP_STALE:
            kept = self.rib.mark_stale(neighbor.address)
            neighbor.arm_stale_timer(verdict.restart_time, RESTART_TIMER, self._expired)
            log.warning(
                event(
                    "bgp_session_down",
                    peer=neighbor.address,
                    reason=reason,
                    action="keeping its routes as stale",
                    stale=self.rib.stale_count(neighbor.address),
                    restart_time=verdict.restart_time,
                )
            )
            return kept
        withdrawn = self.drop_routes(neighbor)
        log.warning(
            event(
                "bgp_session_down",
                peer=neighbor.address,
                reason=reason,
                action="withdrawing its routes",
                why=verdict.why,
                withdrawn=len(withdrawn),
            )
        )
        return withdrawn

    def end_of_rib(self, neighbor: Neighbor, family: str) -> Changes:
        neighbor.eor.add(family)
        log.info(event("bgp_end_of_rib_received", peer=neighbor.address, family=family))
        version = graceful.FAMILY_VERSIONS.get(family)
        if version is None:
            return {}
        swept = self.rib.sweep_stale(neighbor.address, version)
        if swept:
            log.info(event("bgp_stale_swept", peer=neighbor.address, family=family, withdrawn=len(swept)))
        self._settled(neighbor)
        return swept

    def channel_lost(self, neighbors: Iterable[Neighbor]) -> Changes:
        """Our ExaBGP died: every session went with it, but the kernel still forwards. Each
        peer's paths stay as stale until its new session's End-of-RIB or our restart time."""
        changes: Changes = {}
        for neighbor in neighbors:
            neighbor.channel_lost()
            if self.rib.adj_rib_in(neighbor.address):
                changes.update(self.rib.mark_stale(neighbor.address))
                neighbor.arm_stale_timer(self.timers.restart_time, RESTART_TIMER, self._expired)
        log.warning(
            event(
                "exabgp_channel_lost",
                stale_peers=len(self.rib.stale_peers()),
                stale=self.rib.stale_count(),
                action="keeping routes as stale",
            )
        )
        return changes

    def bfd_changed(self, neighbor: Neighbor, state: str, diag: str) -> Changes | None:
        """The BFD process says the peer's forwarding path changed. Down after Up: its routes go
        at once, fresh or kept through a graceful restart (a dead path is not a restart, RFC 5882
        §4.3); the changes, or None when nothing is to be done."""
        previous, neighbor.bfd = neighbor.bfd, state
        if state == "up" or previous != "up" or diag == "neighbor_admin_down":
            log.info(event("bfd_state", peer=neighbor.address, state=state, diag=diag))
            return None
        withdrawn = self.drop_routes(neighbor)
        neighbor.last_error = f"BFD down ({diag.replace('_', ' ')}): its forwarding path is lost"
        log.warning(
            event(
                "bfd_down",
                peer=neighbor.address,
                diag=diag,
                withdrawn=len(withdrawn),
                action="routes withdrawn at once",
            )
        )
        return withdrawn

    def drop_routes(self, neighbor: Neighbor) -> Changes:
        """Every route of the peer goes at once, fresh or kept as stale."""
        neighbor.cancel_stale_timer()
        return self.rib.peer_down(neighbor.address)

    def _settled(self, neighbor: Neighbor) -> None:
        if not self.rib.stale_count(neighbor.address):
            neighbor.cancel_stale_timer()

    def _expired(self, neighbor: Neighbor, kind: str) -> None:
        address = neighbor.address
        if kind == RESTART_TIMER and neighbor.config.long_lived_stale and self.timers.long_lived_stale_time:
            # in the spirit of RFC 9494, as local policy (ExaBGP cannot carry the LLGR
            # capability): a reflector away this long still beats no route at all
            changes = self.rib.mark_stale(address, Staleness.LONG_LIVED)
            keep = self.timers.long_lived_stale_time
            neighbor.arm_stale_timer(keep, LONG_LIVED_TIMER, self._expired)
            log.warning(
                event("bgp_long_lived_stale", peer=address, routes=self.rib.stale_count(address), keep_s=keep)
            )
            self.program(changes)
            return
        changes = self.rib.sweep_stale(address)
        log.warning(event("bgp_stale_expired", peer=address, timer=kind, withdrawn=len(changes)))
        self.program(changes)
