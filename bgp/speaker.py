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

from bgp import export, graceful, lifecycle, model, status
from bgp.clock import Clock, LoopClock
from bgp.config import Reconfiguration, SpeakerConfig
from bgp.conflicts import ConflictTracker
from bgp.dynamic import ClientFile, DynamicPeers
from bgp.events import event
from bgp.exabgp.bridge import ExaBgpBridge
from bgp.exabgp.config import render_config, render_environment
from bgp.helper import GracefulHelper
from bgp.holddown import ReceiveLimits
from bgp.model import Event, IPAddress, IPNetwork
from bgp.neighbor import Neighbor
from bgp.policy import ImportPolicy
from bgp.records import SpeakerStatus
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
        clients_file: Path | None = None,
        clients_changed: Callable[[list[IPAddress]], None] | None = None,
    ) -> None:
        """`fabric` waits for the fabric address and gives its interface's subnets (the node
        reads them from the kernel; None: nothing to wait for, none known); `md5_drops` reads
        the kernel's TCP-MD5 drop counters (a session's hint when it does not come up).
        `clients_file` keeps the clients of ranges across restarts (bgp.dynamic);
        `clients_changed` is told their addresses when one joins or is forgotten (BFD)."""
        self.cfg, self.sink, self.clock = cfg, sink, clock or LoopClock()
        self._fabric, self._md5_drops = fabric or _no_fabric, md5_drops
        self.fabric_subnets: tuple[IPNetwork, ...] = ()  # the fabric interface's, once it is up
        self.local: set[IPNetwork] = set()  # our own prefixes: workloads and blocks
        self.rib = Rib(cfg.import_policy(), cfg.max_paths)
        self.neighbors = {n.address: Neighbor(n, self.clock) for n in cfg.neighbors}
        self._clients_changed = clients_changed
        self.dynamic = DynamicPeers(
            cfg,
            self.neighbors,
            self.clock,
            self._forget_client,
            ClientFile(clients_file) if clients_file is not None else None,
        )
        self.me = cfg.local_side()
        self.counters: Counter[str] = Counter()
        self.exabgp = ExaBgpBridge(
            runtime_dir,
            lambda api: render_config(self.cfg, api, skip=self._held_down()),
            render_environment(cfg),
            self,
            self.counters,
        )
        self.helper = GracefulHelper(self.rib, cfg.timers, self.program)
        self.restart = RestartCoordinator(cfg, self.neighbors, self.clock, self._ready, self.rib.stale_count)
        self.limits = ReceiveLimits(self.rib, self.exabgp, self.drop_routes)
        own = (cfg.router_id, *cfg.fabric_addresses)
        self.reports = RouteReports(self.rib, ConflictTracker(cfg.name, cfg.pools, own), self.counters)
        self.ready = asyncio.Event()
        self.withdrawing = False
        self.has_peers = asyncio.Event()  # someone to speak to: ExaBGP starts then, not before
        if cfg.neighbors or cfg.ranges:
            self.has_peers.set()

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        await lifecycle.run(self, self._fabric, self._md5_drops)

    async def stop(self) -> None:
        """Stop ExaBGP without a NOTIFICATION: peers keep our routes for our restart time."""
        await self.exabgp.stop()

    async def withdraw_and_stop(self, timeout: float = 10.0) -> int:
        return await lifecycle.withdraw_and_stop(self, timeout)

    async def reconfigure(self, cfg: SpeakerConfig, change: Reconfiguration, timeout: float = 10.0) -> None:
        await lifecycle.reconfigure(self, cfg, change, timeout)

    def every_prefix(self) -> set[IPNetwork]:
        """Every prefix any peer might be sent."""
        return set(self.rib.loc_rib()) | self.local | set(self.cfg.pools)

    def policy(self) -> ImportPolicy:
        return self.cfg.import_policy(self.fabric_subnets, self.local)

    def learn_fabric_subnets(self, subnets: tuple[IPNetwork, ...]) -> None:
        """The subnets of the fabric interface's global addresses: where iBGP next hops may be."""
        self.fabric_subnets = subnets
        self.rib.set_policy(self.policy())
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
        self.reports.merge(changes, self.rib.set_policy(self.policy(), affected), self.neighbors)
        self.program(changes, also=changed)

    def set_draining(self, draining: bool) -> None:
        """RFC 8326: re-announce our routes with GRACEFUL_SHUTDOWN (or without it again)."""
        if self.me.draining == draining:
            return
        self.me = self.cfg.local_side(draining=draining)
        log.warning(event("bgp_drain" if draining else "bgp_undrain", routes=len(self.local)))
        self.refresh(self.local | set(self.cfg.pools))

    @property
    def draining(self) -> bool:
        return self.me.draining

    def set_local_ready(self) -> None:
        """The node has restored and installed our workloads: our table is whole."""
        if not self.restart.local_ready:
            self.restart.local_ready = True
            self._send_due_eors()

    def bfd_state(self, peer: str, state: str, diag: str) -> None:
        """BFD down: the peer's routes go at once and its session is closed (bgp.helper);
        ExaBGP opens it again when the path is back."""
        neighbor = self.neighbors.get(ip_address(peer))
        if neighbor is not None and (withdrawn := self.helper.bfd_changed(neighbor, state, diag)) is not None:
            self.program(withdrawn)
            if neighbor.up:
                self.exabgp.teardown([neighbor.address], 2)

    # --- what ExaBGP tells us (bgp.exabgp.bridge.EventHandler) ------------------------------

    def channel_opened(self) -> None:
        for neighbor in self.neighbors.values():
            neighbor.channel_opened()
        self.dynamic.channel_changed()  # a new ExaBGP knows no client: each is sent all when up
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
        self.program(changes)
        # only now: an End-of-RIB queued before this batch's announcements would tell a peer
        # to sweep routes that are about to be sent to it
        self._send_due_eors()

    def channel_lost(self) -> None:
        changes = self.helper.channel_lost(self.neighbors.values())
        self.dynamic.channel_changed()
        self.restart.update_headless()
        self.program(changes)

    def _handle(self, ev: Event, changes: Changes) -> None:
        if isinstance(ev, model.CommandAnswer):
            return  # the bridge's; none reaches here
        neighbor = self.neighbors.get(ev.peer) or self._client(ev.peer)
        if neighbor is None:
            log.warning(event("bgp_unknown_peer", peer=ev.peer, message=type(ev).__name__))
            return
        if neighbor.pending and not neighbor.dynamic:
            # ExaBGP has taken the reloaded config: the peer gets its routes
            neighbor.pending = False
            self.refresh(self.every_prefix())
        if isinstance(ev, model.PeerOpen):
            changes.update(self.helper.opened(neighbor, ev))
        elif isinstance(ev, model.PeerState):
            if self.helper.session(neighbor, ev, changes):
                self.restart.update_headless()
                if neighbor.dynamic:
                    self._client_session(neighbor)
        elif isinstance(ev, model.RouteUpdate):
            neighbor.updates += 1
            if neighbor.held_down:
                return  # torn down for max prefixes: what was still in flight is ignored
            peer = model.Peer(ev.peer, ev.peer_asn, self.cfg.asn, neighbor.router_id)
            result = self.rib.update(peer, self.limits.admit(neighbor, ev), ev.withdrawn)
            self.reports.merge(changes, result, self.neighbors)
        elif isinstance(ev, model.EndOfRib):
            changes.update(self.helper.end_of_rib(neighbor, ev.family))
            self.restart.end_of_rib_received()
        elif isinstance(ev, model.Notification):
            neighbor.notification(ev.code, ev.subcode, ev.data)
            log.warning(
                event("bgp_notification", peer=ev.peer, code=ev.code, subcode=ev.subcode, data=ev.data)
            )

    # --- changes out: the sink and every peer's Adj-RIB-Out ------------------------------

    def program(self, changes: Changes, also: Iterable[IPNetwork] = ()) -> None:
        self.refresh(set(changes) | set(also))
        if changes and self.cfg.installs_learned_routes:
            self.sink.best_paths(changes)

    def refresh(self, prefixes: Iterable[IPNetwork]) -> None:
        """Send each peer the difference between what it should have and what it has."""
        local, withdrawing = self.local, self.withdrawing
        self.exabgp.send(export.refresh(self.neighbors, prefixes, self.me, local, self.rib, withdrawing))

    def _send_due_eors(self) -> None:
        if not self.exabgp.connected:
            return
        # one command for every peer with the same families: a reflector's End-of-RIBs fall due
        # for all its clients at once, and ExaBGP's cost is per command (it scans its peers)
        by_families: dict[tuple[str, ...], list[IPAddress]] = {}
        for neighbor in self.restart.eors_due():
            families = tuple(sorted(neighbor.families & set(graceful.FAMILY_VERSIONS)))
            by_families.setdefault(families, []).append(neighbor.address)
            log.info(event("bgp_end_of_rib_sent", peer=neighbor.address, families=",".join(families)))
        for families, peers in by_families.items():
            self.exabgp.end_of_rib(peers, families)

    def drop_routes(self, neighbor: Neighbor) -> int:
        """Withdraw every route of a peer at once, fresh or kept as stale; how many went."""
        withdrawn = self.helper.drop_routes(neighbor)
        self.program(withdrawn)
        return len(withdrawn)

    # --- clients of ranges (bgp.dynamic) ------------------------------------------------------

    def _client(self, address: IPAddress) -> Neighbor | None:
        neighbor = self.dynamic.admit(address)
        if neighbor is not None:
            self._tell_clients()
        return neighbor

    def _client_session(self, neighbor: Neighbor) -> None:
        if neighbor.up:
            self.dynamic.came_up(neighbor)
            local, rib = self.local, self.rib
            self.exabgp.send(
                export.refresh(
                    self.neighbors, self.every_prefix(), self.me, local, rib, only={neighbor.address}
                )
            )
        else:
            self.dynamic.went_down(neighbor)

    def _forget_client(self, neighbor: Neighbor) -> None:
        self.program(self.helper.drop_routes(neighbor))
        self._tell_clients(without=neighbor.address)

    def _tell_clients(self, without: IPAddress | None = None) -> None:
        if self._clients_changed is not None:
            self._clients_changed([n.address for n in self.dynamic.clients() if n.address != without])

    def holds(self, address: IPAddress) -> bool:
        """Whether a peer's session is up or any route of it is kept (a registry's client
        that left is forgotten once this is no longer so)."""
        neighbor = self.neighbors.get(address)
        return neighbor is not None and (neighbor.up or bool(self.rib.holds(address)))

    def _held_down(self) -> set[IPAddress]:
        return {a for a, n in self.neighbors.items() if n.held_down}

    # --- what the node asks --------------------------------------------------------------

    def status(self) -> SpeakerStatus:
        return status.speaker_status(self)

    def block_owner(self, ip: IPAddress) -> tuple[IPNetwork, str] | None:
        return status.block_owner(self.rib, self.cfg, ip)

    def route_details(self, prefix: IPNetwork) -> dict[str, Any] | None:
        return status.route_details(self.rib, prefix)
