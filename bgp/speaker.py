"""The node's BGP speaker, a dispatcher: ExaBGP's events in, the RIB and neighbors updated,
best-path changes out to the node's RouteSink, and each peer sent what it should have.

Event-driven throughout: a workload change is announced the moment it happens, received
updates are applied to the RIB and handed on in batches (one per chunk read from ExaBGP).
The rules live elsewhere: one Neighbor per peer (bgp.neighbor), the graceful-restart helper
(bgp.helper), our own restart and readiness (bgp.restart), max-prefix (bgp.holddown), what is
exported (bgp.export), refusals and conflicts (bgp.reports); ExaBGP is behind bgp.exabgp.bridge.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from bgp import export, graceful, status
from bgp.clock import Clock, LoopClock
from bgp.config import Reconfiguration, SpeakerConfig
from bgp.conflicts import ConflictTracker
from bgp.events import event
from bgp.exabgp.bridge import ExaBgpBridge
from bgp.exabgp.config import render_config, render_environment
from bgp.helper import GracefulHelper
from bgp.hints import watch_sessions
from bgp.holddown import ReceiveLimits, tear_down
from bgp.model import (
    CommandAnswer,
    EndOfRib,
    Event,
    Export,
    IPAddress,
    IPNetwork,
    Notification,
    Peer,
    PeerOpen,
    PeerState,
    RouteUpdate,
)
from bgp.neighbor import Neighbor, Transition
from bgp.policy import ImportPolicy
from bgp.reports import RouteReports
from bgp.restart import RestartCoordinator
from bgp.rib import Changes, Rib
from bgp.sink import RouteSink

log = logging.getLogger("bgp.speaker")


async def _no_fabric() -> tuple[IPNetwork, ...]:
    return ()


class Speaker:
    def __init__(
        self,
        cfg: SpeakerConfig,
        sink: RouteSink,
        runtime_dir: Path,
        fabric: Callable[[], Awaitable[tuple[IPNetwork, ...]]] | None = None,
        md5_drops: Callable[[], dict[str, int]] = dict,
        clock: Clock | None = None,
    ) -> None:
        """`fabric` waits for the fabric address and gives its interface's subnets (the node
        reads them from the kernel; None: nothing to wait for, none known); `md5_drops` reads
        the kernel's TCP-MD5 drop counters (a session's hint when it does not come up)."""
        self.cfg, self.sink, self.clock = cfg, sink, clock or LoopClock()
        self._fabric, self._md5_drops = fabric or _no_fabric, md5_drops
        self.fabric_subnets: tuple[IPNetwork, ...] = ()  # the fabric interface's, once it is up
        self.local: set[IPNetwork] = set()  # our own prefixes: workloads and blocks
        self.rib = Rib(cfg.import_policy(), cfg.max_paths)
        self.neighbors = {n.address: Neighbor(n, self.clock) for n in cfg.neighbors}
        self.me = cfg.local_side()
        self.counters: Counter[str] = Counter()
        self.exabgp = ExaBgpBridge(
            runtime_dir,
            lambda api: render_config(self.cfg, api, skip=self._held_down()),
            render_environment(cfg),
            self,
            self.counters,
        )
        self.helper = GracefulHelper(self.rib, cfg.timers, self._program)
        self.restart = RestartCoordinator(cfg, self.neighbors, self.clock, self._ready, self.rib.stale_count)
        self.limits = ReceiveLimits(self.rib, self.exabgp, self._drop_routes)
        self.reports = RouteReports(self.rib, ConflictTracker(cfg.name, cfg.pools), self.counters)
        self.ready = asyncio.Event()
        self._withdrawing = False

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        self.restart.start()
        if not self.neighbors:
            await asyncio.Event().wait()  # nothing to speak to: no ExaBGP at all
        watcher = asyncio.create_task(
            watch_sessions(self.neighbors.values, self._md5_drops), name="bgp-watch"
        )
        self._refresh(self.cfg.pools)  # aggregates for peers that get `export: aggregate`
        try:
            # ExaBGP cannot listen on an address the host does not have yet (a node booting)
            self._learn_fabric_subnets(await self._fabric())
            await self.exabgp.run()
        finally:
            self.restart.stop()
            self.limits.cancel()
            watcher.cancel()

    async def stop(self) -> None:
        """Stop ExaBGP without a NOTIFICATION: peers keep our routes for our restart time."""
        await self.exabgp.stop()

    async def withdraw_and_stop(self, timeout: float = 10.0) -> int:
        """Decommission: withdraw everything we announced, close every session with a Cease
        (peers drop our routes at once, not after a restart time), then stop ExaBGP."""
        withdrawn = sum(len(n.adj_rib_out) for n in self.neighbors.values())
        self._withdrawing = True
        self._refresh({prefix for n in self.neighbors.values() for prefix in n.adj_rib_out})
        await self.exabgp.flushed(timeout)
        await asyncio.sleep(0.2)  # ExaBGP answers when it has queued an UPDATE, sends it a turn later
        up = [n for n in self.neighbors.values() if n.up]
        if up:
            await tear_down(self.exabgp, up, 2, timeout)
        log.warning(event("bgp_withdrawn_for_stop", routes=withdrawn, peers_notified=len(up)))
        await self.exabgp.stop()
        return withdrawn

    async def reconfigure(self, cfg: SpeakerConfig, change: Reconfiguration, timeout: float = 10.0) -> None:
        """Take a reloaded config: only what changed moves (the node's reload plan says what).

        Removed peers get a Cease (subcode 3, de-configured) so they drop our routes at once;
        ExaBGP then reloads its own config (SIGUSR1), which starts added sessions and leaves
        every unchanged one alone. An added peer is sent its routes once ExaBGP reports it.
        """
        configs = {n.address: n for n in cfg.neighbors}
        removed = [n for a, n in self.neighbors.items() if a not in configs]
        if up := [n for n in removed if n.up]:
            await tear_down(self.exabgp, up, 3, timeout)
        for neighbor in removed:
            self._drop_routes(neighbor)
            neighbor.held_until = None  # a hold-down's end finds nothing to release
            del self.neighbors[neighbor.address]
        self.cfg = self.restart.cfg = cfg
        self.helper.timers, self.rib.max_paths = cfg.timers, cfg.max_paths
        for address, config in configs.items():
            neighbor = self.neighbors.setdefault(address, Neighbor(config, self.clock, pending=True))
            limit_changed = neighbor.config.max_prefixes != config.max_prefixes
            neighbor.config = config  # descriptions, export modes and limits too
            if limit_changed:
                self.limits.limit_changed(neighbor)
        if change.policy_changed:
            changes: Changes = {}
            self.reports.merge(changes, self.rib.set_policy(self._policy()), self.neighbors)
            self._program(changes)
        self.me = cfg.local_side(draining=self.me.draining)
        if change.export_changed:
            self._refresh(set(self.rib.loc_rib()) | self.local | set(cfg.pools))
        if change.sessions_changed or removed:
            self.exabgp.reload_config()

    def _policy(self) -> ImportPolicy:
        return self.cfg.import_policy(self.fabric_subnets, self.local)

    def _learn_fabric_subnets(self, subnets: tuple[IPNetwork, ...]) -> None:
        """The subnets of the fabric interface's global addresses: where iBGP next hops may be."""
        self.fabric_subnets = subnets
        self.rib.set_policy(self._policy())
        extra = ",".join(map(str, self.cfg.next_hops)) or "none"
        log.info(event("bgp_fabric_subnets", subnets=",".join(map(str, subnets)), next_hops=extra))

    def _ready(self, why: str) -> None:
        self.ready.set()
        self.sink.bgp_ready()

    # --- what the node tells us ----------------------------------------------------------

    def set_local_prefixes(self, prefixes: Iterable[IPNetwork]) -> None:
        wanted = set(prefixes)
        changed = wanted ^ self.local
        self.local = wanted
        if not changed:
            return
        # a block of ours shadows whatever others announce inside it: judge those again too
        affected = set(changed)
        for prefix in changed:
            if prefix.prefixlen < prefix.max_prefixlen:
                affected |= self.rib.received_within(prefix)
        changes: Changes = {}
        self.reports.merge(changes, self.rib.set_policy(self._policy(), affected), self.neighbors)
        self._program(changes, also=changed)

    def set_draining(self, draining: bool) -> None:
        """RFC 8326: re-announce our routes with GRACEFUL_SHUTDOWN (or without it again)."""
        if self.me.draining == draining:
            return
        self.me = self.cfg.local_side(draining=draining)
        log.warning(event("bgp_drain" if draining else "bgp_undrain", routes=len(self.local)))
        self._refresh(self.local | set(self.cfg.pools))

    @property
    def draining(self) -> bool:
        return self.me.draining

    def set_local_ready(self) -> None:
        """The node has restored and installed our workloads: our table is whole."""
        if not self.restart.local_ready:
            self.restart.local_ready = True
            self._send_due_eors()

    def bfd_state(self, peer: str, state: str, diag: str) -> None:
        """The BFD process says a peer's forwarding path changed. Down after Up: its routes go at
        once, fresh or kept through a graceful restart (a dead path is not a restart, RFC 5882
        §4.3), and its session is closed; ExaBGP opens it again when the path is back."""
        neighbor = self.neighbors.get(ip_address(peer))
        if neighbor is None:
            return
        previous, neighbor.bfd = neighbor.bfd, state
        if state == "up" or previous != "up" or diag == "neighbor_admin_down":
            log.info(event("bfd_state", peer=peer, state=state, diag=diag))
            return
        withdrawn = self._drop_routes(neighbor)
        neighbor.last_error = f"BFD down ({diag.replace('_', ' ')}): its forwarding path is lost"
        log.warning(
            event("bfd_down", peer=peer, diag=diag, withdrawn=withdrawn, action="routes withdrawn at once")
        )
        if neighbor.up:
            self.exabgp.teardown([neighbor.address], 2)

    # --- what ExaBGP tells us (bgp.exabgp.bridge.EventHandler) ------------------------------

    def channel_opened(self) -> None:
        for neighbor in self.neighbors.values():
            neighbor.channel_opened()
        self.restart.channel_opened(self._send_due_eors)
        self.exabgp.send(export.everything({a: n.adj_rib_out for a, n in self.neighbors.items()}))

    def events(self, batch: Sequence[Event]) -> None:
        changes: Changes = {}
        for ev in batch:
            try:
                self._handle(ev, changes)
            except Exception:  # a bad update must never take the daemon down
                self.counters["messages_dropped"] += 1
                log.exception(event("bgp_event_failed", event_type=type(ev).__name__))
        self._program(changes)
        # only now: an End-of-RIB queued before this batch's announcements would tell a peer
        # to sweep routes that are about to be sent to it
        self._send_due_eors()

    def channel_lost(self) -> None:
        changes = self.helper.channel_lost(self.neighbors.values())
        self.restart.update_headless()
        self._program(changes)

    def _handle(self, ev: Event, changes: Changes) -> None:
        if isinstance(ev, CommandAnswer):
            return  # the bridge's; none reaches here
        neighbor = self.neighbors.get(ev.peer)
        if neighbor is None:
            log.warning(event("bgp_unknown_peer", peer=ev.peer, message=type(ev).__name__))
            return
        if neighbor.pending:  # ExaBGP has taken the reloaded config: the peer gets its routes
            neighbor.pending = False
            self._refresh(set(self.rib.loc_rib()) | self.local | set(self.cfg.pools))
        if isinstance(ev, PeerOpen):
            changes.update(self.helper.opened(neighbor, ev))
        elif isinstance(ev, PeerState):
            transition = neighbor.state_changed(ev.state, ev.reason)
            if transition is Transition.UP:
                stale = self.helper.came_up(neighbor)
                log.info(
                    event(
                        "bgp_session_up",
                        peer=ev.peer,
                        asn=ev.peer_asn,
                        router_id=neighbor.router_id,
                        stale=stale,
                    )
                )
            elif transition is Transition.DOWN:
                changes.update(self.helper.went_down(neighbor, ev.reason))
            if transition is not Transition.NONE:
                self.restart.update_headless()
        elif isinstance(ev, RouteUpdate):
            neighbor.updates += 1
            if neighbor.held_down:
                return  # torn down for max prefixes: what was still in flight is ignored
            peer = Peer(ev.peer, ev.peer_asn, self.cfg.asn, neighbor.router_id)
            result = self.rib.update(peer, self.limits.admit(neighbor, ev), ev.withdrawn)
            self.reports.merge(changes, result, self.neighbors)
        elif isinstance(ev, EndOfRib):
            changes.update(self.helper.end_of_rib(neighbor, ev.family))
            self.restart.end_of_rib_received()
        elif isinstance(ev, Notification):
            neighbor.notification(ev.code, ev.subcode, ev.data)
            log.warning(
                event("bgp_notification", peer=ev.peer, code=ev.code, subcode=ev.subcode, data=ev.data)
            )

    # --- changes out: the sink and every peer's Adj-RIB-Out ------------------------------

    def _program(self, changes: Changes, also: Iterable[IPNetwork] = ()) -> None:
        self._refresh(set(changes) | set(also))
        if changes and self.cfg.installs_learned_routes:
            self.sink.best_paths(changes)

    def _refresh(self, prefixes: Iterable[IPNetwork]) -> None:
        """Send each peer the difference between what it should have and what it has."""
        prefixes = list(prefixes)
        selections = {prefix: self.rib.selection(prefix) for prefix in prefixes}
        roles = {a: n.config.role for a, n in self.neighbors.items()}
        targets = {a: n for a, n in self.neighbors.items() if not n.pending}  # pending: unknown to ExaBGP

        def want(address: IPAddress, prefix: IPNetwork) -> Export | None:
            if self._withdrawing:
                return None
            config, local = targets[address].config, self.local
            return export.desired(
                self.me, config, prefix, local=local, selection=selections[prefix], roles=roles
            )

        plan = export.plan({a: n.adj_rib_out for a, n in targets.items()}, prefixes, want)
        for address, sent in plan.sent.items():
            adj_rib_out = targets[address].adj_rib_out
            for prefix, attributes in sent.items():
                if attributes is None:
                    del adj_rib_out[prefix]
                else:
                    adj_rib_out[prefix] = attributes
        self.exabgp.send(plan)

    def _send_due_eors(self) -> None:
        if not self.exabgp.connected:
            return
        for neighbor in self.restart.eors_due():
            families = sorted(neighbor.families & set(graceful.FAMILY_VERSIONS))
            self.exabgp.end_of_rib(neighbor.address, families)
            log.info(event("bgp_end_of_rib_sent", peer=neighbor.address, families=",".join(families)))

    def _drop_routes(self, neighbor: Neighbor) -> int:
        """Withdraw every route of a peer at once, fresh or kept as stale; how many went."""
        withdrawn = self.helper.drop_routes(neighbor)
        self._program(withdrawn)
        return len(withdrawn)

    def _held_down(self) -> set[IPAddress]:
        return {a for a, n in self.neighbors.items() if n.held_down}

    # --- what the node asks --------------------------------------------------------------

    def status(self) -> status.SpeakerStatus:
        return status.speaker_status(self)

    def block_owner(self, ip: IPAddress) -> tuple[IPNetwork, str] | None:
        return status.block_owner(self.rib, self.cfg, ip)

    def route_details(self, prefix: IPNetwork) -> dict[str, Any] | None:
        return status.route_details(self.rib, prefix)
