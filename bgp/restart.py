"""Our own restart: when the speaker is ready, when it is headless, when our End-of-RIB goes.

Ready (the FIB may drop what the previous run left): every peer's End-of-RIB is in, or our
restart time since start has passed (with one reflector's End-of-RIB, or none at all; and if
no reflector has said anything, the kernel's routes are kept a long-lived stale time longer).
Headless: we have reflectors, none is up, and we are past start-up (or had one up).
Our End-of-RIB (bgp.graceful.eor_due): once our table is whole, and on a reflector once the
other peers' End-of-RIBs are in or the selection deferral timer has run out. The rules are
bgp.graceful's; this keeps the timers, on an injected Clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from bgp import graceful
from bgp.clock import Clock, Timer
from bgp.config import PeerKind, SpeakerConfig
from bgp.events import event
from bgp.model import IPAddress
from bgp.neighbor import Neighbor

log = logging.getLogger("bgp.speaker")


class RestartCoordinator:
    def __init__(
        self,
        cfg: SpeakerConfig,
        neighbors: Mapping[IPAddress, Neighbor],
        clock: Clock,
        on_ready: Callable[[str], None],
        stale_count: Callable[[], int] = lambda: 0,
    ) -> None:
        self.cfg = cfg  # a reload may replace it
        self.neighbors = neighbors  # the speaker's, read only
        self.clock = clock
        self._on_ready = on_ready
        self._stale_count = stale_count
        self.ready = False
        self.local_ready = False  # our own workloads restored and in the kernel
        self.deferral_expired = False
        self.startup_over = False  # our restart time since start has passed
        self.headless_since: float | None = None
        self._reflector_ever_up = False
        self._ready_timer: Timer | None = None
        self._deferral_timer: Timer | None = None

    def _reflectors(self) -> list[Neighbor]:
        return [n for n in self.neighbors.values() if n.config.kind is PeerKind.REFLECTOR]

    # --- start-up and readiness ---------------------------------------------------------

    def start(self) -> None:
        if not self.neighbors:
            self._mark_ready("no peers")
            return
        waited = self.cfg.timers.restart_time
        self._ready_timer = self.clock.call_later(waited, self._startup_timer_over, waited)

    def stop(self) -> None:
        for timer in (self._ready_timer, self._deferral_timer):
            if timer is not None:
                timer.cancel()

    def _startup_timer_over(self, waited: int) -> None:
        """Our restart time since start has passed without End-of-RIB from every peer."""
        self.startup_over = True
        self.update_headless()
        reflectors = self._reflectors()
        if (
            not self.ready
            and reflectors
            and not any(n.eor for n in reflectors)
            and any(n.config.long_lived_stale for n in reflectors)
        ):
            # no reflector has told us anything since we started: the routes our previous run
            # left in the kernel are all the fabric's knowledge we have, so they stay (long-lived)
            keep = self.cfg.timers.long_lived_stale_time
            log.warning(
                event("bgp_ready_deferred", reason="no reflector reachable", keep_kernel_routes_s=keep)
            )
            self._ready_timer = self.clock.call_later(
                keep, self._mark_ready, f"no reflector within {waited + keep}s"
            )
            return
        self._mark_ready(f"no End-of-RIB within {waited}s")

    def end_of_rib_received(self) -> None:
        if all(n.eor for n in self.neighbors.values()):
            self._mark_ready("End-of-RIB from every peer")
        elif self.startup_over and any(n.eor for n in self._reflectors()):
            self._mark_ready("End-of-RIB from a reflector")

    def _mark_ready(self, why: str) -> None:
        if not self.ready:
            self.ready = True
            self._on_ready(why)
            log.info(event("bgp_ready", reason=why))

    # --- headless -----------------------------------------------------------------------

    def update_headless(self) -> None:
        reflectors = self._reflectors()
        if not reflectors:
            return
        up = any(n.up for n in reflectors)
        self._reflector_ever_up |= up
        headless = not up and (self._reflector_ever_up or self.startup_over)
        now = self.clock.time()
        if headless and self.headless_since is None:
            self.headless_since = now
            log.warning(
                event(
                    "bgp_headless",
                    reflectors=len(reflectors),
                    stale=self._stale_count(),
                    action="forwarding on kept routes; local changes wait for a reflector",
                )
            )
        elif not headless and self.headless_since is not None:
            log.warning(
                event(
                    "bgp_headless_over",
                    lasted_s=round(now - self.headless_since, 1),
                    stale=self._stale_count(),
                )
            )
            self.headless_since = None

    # --- our End-of-RIB -----------------------------------------------------------------

    def channel_opened(self, on_deferral_over: Callable[[], None]) -> None:
        """A new ExaBGP is our restart as far as peers can tell: our End-of-RIBs wait again."""
        self.deferral_expired = False
        if self._deferral_timer is not None:
            self._deferral_timer.cancel()
        self._deferral_timer = self.clock.call_later(
            self.cfg.timers.select_defer_time, self._deferral_over, on_deferral_over
        )

    def _deferral_over(self, then: Callable[[], None]) -> None:
        self.deferral_expired = True
        waiting = [str(a) for a, n in self.neighbors.items() if not n.eor]
        if waiting and self.cfg.reflector:
            log.warning(event("bgp_select_deferral_expired", without_end_of_rib_from=",".join(waiting)))
        then()

    def eors_due(self) -> list[Neighbor]:
        """The neighbors our End-of-RIB may go to now (each once a session): marked sent."""
        # eor_sent first: this runs after every batch of events, and at 1,000 neighbours `up` (a
        # property) read for each was a seventh of the daemon's samples for a reflected change
        waiting = [n for n in self.neighbors.values() if not n.eor_sent and n.up]
        if not waiting:
            return []  # the usual case, asked after every batch of events: no N-sized sets built
        received = {a for a, n in self.neighbors.items() if n.eor}
        # restarting peers that may wait for our End-of-RIB before sending theirs (another
        # reflector): not waited for, or two reflectors restarted together would deadlock. A
        # restarting client is waited for: it sends its own as soon as its table is in.
        restarting = {
            a for a, n in self.neighbors.items() if n.restarting() and n.config.kind is not PeerKind.CLIENT
        }
        # only those still owing theirs are asked about: a reflector of N clients would otherwise
        # ask N targets about N peers after every batch of events (O(N^2) each time)
        peers, due = [a for a in self.neighbors if a not in received], []
        for neighbor in waiting:
            if graceful.eor_due(
                local_ready=self.local_ready,
                reflects=self.cfg.reflector,
                target=neighbor.address,
                peers=peers,
                eor_received=received,
                deferral_expired=self.deferral_expired,
                restarting=restarting,
            ):
                neighbor.eor_sent = True
                due.append(neighbor)
        return due
