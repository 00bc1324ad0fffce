"""The node's BGP speaker: ExaBGP events in, RIB and FIB updates out, our workloads announced.

Event-driven throughout: a workload change is announced the moment it happens,
received updates are applied to the RIB and handed to the FIB reconciler in
batches (one per chunk read from ExaBGP), never polled.

Graceful restart (RFC 4724), both roles. Helper: a peer whose session drops without
a NOTIFICATION keeps its paths in the RIB and the FIB, marked stale, for the restart
time it advertised; its new session's UPDATEs make them fresh again and its End-of-RIB
sweeps the rest. When our own ExaBGP dies, every peer's paths are kept the same way.
Restarting: our End-of-RIB goes to a peer only when our table is whole (bgp.graceful).
The rules are pure (bgp.graceful, the RIB's staleness, best path's freshness rule);
this module holds the timers and says when.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

from bgp import graceful, limits, reflection
from bgp.conflicts import HIJACK, HIJACK_REASONS, Conflict, ConflictTracker, origin
from bgp.decision import Selection
from bgp.events import event
from bgp.exabgp import commands
from bgp.exabgp.config import render_config, render_environment
from bgp.exabgp.messages import MessageError, parse_line
from bgp.exabgp.process import Channel, ExaBgpSupervisor
from bgp.exabgp.pump import CommandPump
from bgp.limits import MaxPrefixAction
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
    Staleness,
)
from bgp.peers import LONG_LIVED_TIMER, RESTART_TIMER, STALEPATH_TIMER, PeerStatus, establish_hint
from bgp.policy import ImportPolicy
from bgp.reflection import Role
from bgp.rib import Changes, Rib, UpdateResult
from bgp.sink import RouteSink
from routed.config import NodeConfig, PeerKind
from routed.config import Peer as PeerConfig
from routed.config import Role as NodeRole
from routed.config.reload import ReloadPlan
from routed.config.schema import ExportMode

log = logging.getLogger("bgp.speaker")

READ_CHUNK = 1 << 20
LOGGED_REJECTIONS = 5  # per peer and reason; past it, refusals are counted, not logged
MAX_PREFIXES_SUBCODE = 1  # Cease: Maximum Number of Prefixes Reached (RFC 4486)


def import_policy(cfg: NodeConfig, fabric_subnets: tuple[IPNetwork, ...] = ()) -> ImportPolicy:
    return ImportPolicy(
        pools=tuple(cfg.pools),
        router_id=cfg.router_id,
        local_asn=cfg.asn,
        own_addresses=frozenset({cfg.fabric.address, cfg.router_id}),
        cluster_id=cfg.effective_cluster_id,
        allowed=tuple(cfg.bgp.import_allow),
        allow_default=cfg.bgp.allow_default_route,
        block_lengths=(cfg.ipam.block_size, cfg.ipam.block_size_v6),
        next_hop_subnets=(*fabric_subnets, *cfg.bgp.next_hops) if fabric_subnets else (),
    )


def local_speaker(cfg: NodeConfig, draining: bool = False) -> reflection.LocalSide:
    return reflection.LocalSide(
        router_id=cfg.router_id,
        asn=cfg.asn,
        cluster_id=cfg.effective_cluster_id,
        local_pref=cfg.bgp.local_preference,
        communities=tuple((int(a), int(b)) for a, b in (c.split(":") for c in cfg.bgp.communities)),
        pools=tuple(cfg.pools),
        draining=draining,
    )


async def _no_fabric() -> tuple[IPNetwork, ...]:
    return ()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(event("bgp_task_failed", task=task.get_name(), reason=repr(task.exception())))


class Speaker:
    def __init__(
        self,
        cfg: NodeConfig,
        sink: RouteSink,
        runtime_dir: Path,
        fabric: Callable[[], Awaitable[tuple[IPNetwork, ...]]] | None = None,
        md5_drops: Callable[[], dict[str, int]] = dict,
    ) -> None:
        """`fabric` waits for the fabric address and gives its interface's subnets (the node
        reads them from the kernel; None: nothing to wait for, none known); `md5_drops` reads
        the kernel's TCP-MD5 drop counters (a session's hint when it does not come up)."""
        self.cfg = cfg
        self.sink = sink
        self._fabric = fabric or _no_fabric
        self._md5_drops = md5_drops
        self.fabric_subnets: tuple[IPNetwork, ...] = ()  # the fabric interface's, once it is up
        self.policy = import_policy(cfg)
        self.rib = Rib(self.policy, cfg.bgp.max_paths)
        self.peers: dict[IPAddress, PeerStatus] = {p.address: PeerStatus(p) for p in cfg.resolved_peers()}
        self.local: set[IPNetwork] = set()
        self.me = local_speaker(cfg)
        # Adj-RIB-Out: what each peer has been sent, so only differences go out
        self._out: dict[IPAddress, dict[IPNetwork, Export]] = {a: {} for a in self.peers}
        self.supervisor = ExaBgpSupervisor(
            runtime_dir,
            lambda api: render_config(self.cfg, api, skip=self._held_down()),
            render_environment(cfg),
            self._on_channel,
        )
        self._stale_timers: dict[IPAddress, asyncio.TimerHandle] = {}
        self._local_ready = False  # our own workloads restored and in the kernel
        self._deferral_expired = False
        self._deferral_timer: asyncio.TimerHandle | None = None
        self.counters: Counter[str] = Counter()
        self.rejections: dict[IPAddress, Counter[str]] = {a: Counter() for a in self.peers}  # by reason
        self.conflicts = ConflictTracker(cfg.name, cfg.pools)
        self.pump = CommandPump(self.counters)
        self._tasks: list[asyncio.Task[Any]] = []
        self._withdrawing = False
        self.ready = asyncio.Event()
        self._ready_timer: asyncio.TimerHandle | None = None
        self._startup_over = False  # our restart time since start has passed
        self._reflector_ever_up = False
        self.headless_since: float | None = None

    # --- lifecycle -----------------------------------------------------------

    async def run(self) -> None:
        if not self.peers:
            self._mark_ready("no peers")
            await asyncio.Event().wait()  # nothing to speak to: no ExaBGP at all
        loop = asyncio.get_running_loop()
        timeout = self.cfg.bgp.graceful_restart.restart_time
        self._ready_timer = loop.call_later(timeout, self._startup_timer_over, timeout)
        writer = asyncio.create_task(self.pump.run(), name="bgp-writer")
        self._tasks.append(asyncio.create_task(self._watch_sessions(), name="bgp-watch"))
        self._refresh(self.cfg.pools)  # aggregates for peers that get `export: aggregate`
        try:
            await self._wait_for_fabric_address()
            await self.supervisor.run()
        finally:
            if self._ready_timer is not None:
                self._ready_timer.cancel()
            writer.cancel()
            for task in self._tasks:
                task.cancel()

    async def stop(self) -> None:
        """Stop ExaBGP without a NOTIFICATION: peers keep our routes for our restart time."""
        await self.supervisor.stop()

    async def withdraw_and_stop(self, timeout: float = 10.0) -> int:
        """Decommission: withdraw everything we announced, close every session with a Cease
        (peers drop our routes at once, not after a restart time), then stop ExaBGP."""
        withdrawn = sum(len(sent) for sent in self._out.values())
        self._withdrawing = True
        self._refresh({prefix for sent in self._out.values() for prefix in sent})
        await self.pump.flushed(timeout)
        await asyncio.sleep(0.2)  # ExaBGP answers when it has queued an UPDATE, sends it a turn later
        up = [a for a, s in self.peers.items() if s.state == "up"]
        if up:
            await self._tear_down(up, 2, timeout)
        log.warning(event("bgp_withdrawn_for_stop", routes=withdrawn, peers_notified=len(up)))
        await self.supervisor.stop()
        return withdrawn

    async def _tear_down(self, peers: list[IPAddress], subcode: int, timeout: float) -> None:
        """Close sessions with a Cease and wait until ExaBGP reports them down (it is out then)."""
        self._queue([commands.teardown(peers, subcode)])
        await self.pump.flushed(timeout)
        deadline = time.monotonic() + timeout
        while any(self.peers[a].state == "up" for a in peers) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def reconfigure(self, cfg: NodeConfig, plan: ReloadPlan, timeout: float = 10.0) -> None:
        """Take a reloaded config: only what changed moves (routed.config.reload decides what).

        Removed peers get a Cease (subcode 3, de-configured) so they drop our routes at once;
        ExaBGP then reloads its own config (SIGUSR1), which starts added sessions and leaves
        every unchanged one alone. An added peer is sent its routes once ExaBGP reports it.
        """
        removed = [p.address for p in plan.peers_removed if p.address in self.peers]
        if removed:
            up = [a for a in removed if self.peers[a].state == "up"]
            if up:
                await self._tear_down(up, 3, timeout)
            for address in removed:
                self._drop_routes(self.peers[address])
                for table in (self.peers, self._out, self.rejections):
                    table.pop(address, None)
        self.cfg = cfg
        for peer in plan.peers_added:
            self.peers[peer.address] = PeerStatus(peer, pending=True)
            self._out[peer.address], self.rejections[peer.address] = {}, Counter()
        for address, peer in ((p.address, p) for p in cfg.resolved_peers()):
            status = self.peers[address]
            limit_changed = status.config.max_prefixes != peer.max_prefixes
            status.config = peer  # descriptions, export modes and limits too
            if limit_changed:
                self._limit_changed(status)
        self.rib.max_paths = cfg.bgp.max_paths
        self.policy = import_policy(cfg, self.fabric_subnets)
        if plan.policy_changed:
            changes: Changes = {}
            self._merge(changes, self.rib.set_policy(self.policy.with_local_prefixes(self.local)))
            self._program(changes)
        self.me = local_speaker(cfg, draining=self.me.draining)
        if plan.export_changed:
            self._refresh(self._every_prefix())
        if plan.peers_added or plan.peers_removed or plan.peers_changed:
            self.supervisor.reload_config()

    def _every_prefix(self) -> set[IPNetwork]:
        """Every prefix any peer might be sent."""
        return set(self.rib.loc_rib()) | self.local | set(self.cfg.pools)

    def set_draining(self, draining: bool) -> None:
        """RFC 8326: re-announce our routes with GRACEFUL_SHUTDOWN (or without it again)."""
        if self.me.draining == draining:
            return
        self.me = dataclasses.replace(self.me, draining=draining)
        log.warning(event("bgp_drain" if draining else "bgp_undrain", routes=len(self.local)))
        self._refresh(self.local | set(self.cfg.pools))

    @property
    def draining(self) -> bool:
        return self.me.draining

    def set_local_ready(self) -> None:
        """The daemon has restored and installed our workloads: our table is whole."""
        if not self._local_ready:
            self._local_ready = True
            self._send_due_eors()

    async def _wait_for_fabric_address(self) -> None:
        """ExaBGP cannot listen on an address the host does not have yet (a node still booting):
        the node's `fabric` waits for it, and tells the subnets of its interface."""
        self._learn_fabric_subnets(await self._fabric())

    def _learn_fabric_subnets(self, subnets: tuple[IPNetwork, ...]) -> None:
        """The subnets of the fabric interface's global addresses: where iBGP next hops may be."""
        self.fabric_subnets = subnets
        self.policy = import_policy(self.cfg, subnets)
        self.rib.set_policy(self.policy.with_local_prefixes(self.local))
        extra = ",".join(map(str, self.cfg.bgp.next_hops)) or "none"
        log.info(event("bgp_fabric_subnets", subnets=",".join(map(str, subnets)), next_hops=extra))

    def _reflector_peers(self) -> list[PeerStatus]:
        return [s for s in self.peers.values() if s.config.kind is PeerKind.REFLECTOR]

    def _long_lived(self, status: PeerStatus) -> bool:
        return self.cfg.long_lived_stale_for(status.config)

    def _startup_timer_over(self, waited: int) -> None:
        """Our restart time since start has passed without End-of-RIB from every peer."""
        self._startup_over = True
        self._update_headless()
        reflectors = self._reflector_peers()
        if (
            not self.ready.is_set()
            and reflectors
            and not any(s.eor for s in reflectors)
            and any(self._long_lived(s) for s in reflectors)
        ):
            # no reflector has told us anything since we started: the routes our previous run
            # left in the kernel are all the fabric's knowledge we have, so they stay (long-lived)
            keep = self.cfg.bgp.long_lived_stale_time
            log.warning(
                event("bgp_ready_deferred", reason="no reflector reachable", keep_kernel_routes_s=keep)
            )
            self._ready_timer = asyncio.get_running_loop().call_later(
                keep, self._mark_ready, f"no reflector within {waited + keep}s"
            )
            return
        self._mark_ready(f"no End-of-RIB within {waited}s")

    def _check_ready(self) -> None:
        if all(s.eor for s in self.peers.values()):
            self._mark_ready("End-of-RIB from every peer")
        elif self._startup_over and any(s.eor for s in self._reflector_peers()):
            self._mark_ready("End-of-RIB from a reflector")

    def _update_headless(self) -> None:
        """Headless: we have reflectors, none is up, and we are past start-up (or had one)."""
        reflectors = self._reflector_peers()
        if not reflectors:
            return
        up = any(s.state == "up" for s in reflectors)
        self._reflector_ever_up |= up
        headless = not up and (self._reflector_ever_up or self._startup_over)
        now = time.time()
        if headless and self.headless_since is None:
            self.headless_since = now
            log.warning(
                event(
                    "bgp_headless",
                    reflectors=len(reflectors),
                    stale=self.rib.stale_count(),
                    action="forwarding on kept routes; local changes wait for a reflector",
                )
            )
        elif not headless and self.headless_since is not None:
            log.warning(
                event(
                    "bgp_headless_over",
                    lasted_s=round(now - self.headless_since, 1),
                    stale=self.rib.stale_count(),
                )
            )
            self.headless_since = None

    def _mark_ready(self, why: str) -> None:
        if not self.ready.is_set():
            self.ready.set()
            self.sink.bgp_ready()
            log.info(event("bgp_ready", reason=why))

    # --- what we announce ------------------------------------------------------

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
        self._merge(changes, self.rib.set_policy(self.policy.with_local_prefixes(wanted), affected))
        self._program(changes, also=changed)

    @staticmethod
    def _role(peer: PeerConfig) -> Role:
        if peer.kind is PeerKind.CLIENT:
            return Role.CLIENT
        if peer.kind is PeerKind.EBGP:
            return Role.EBGP
        return Role.NONCLIENT

    def _desired(
        self,
        address: IPAddress,
        target: Role,
        export: ExportMode,
        prefix: IPNetwork,
        roles: dict[IPAddress, Role],
    ) -> Export | None:
        if prefix.version != address.version:
            return None  # next hops are session addresses: each family over its own sessions
        if self._withdrawing:
            return None
        if export is ExportMode.AGGREGATE:
            aggregate = prefix in self.cfg.pools
            return reflection.local_export(self.me, target) if aggregate else None
        selection = self.rib.selection(prefix)
        best = selection.best if selection else None
        source = roles.get(best.peer.address) if best else None
        return reflection.advertise(self.me, address, target, prefix in self.local, best, source)

    def _refresh(self, prefixes: Iterable[IPNetwork]) -> None:
        """Send each peer the difference between what it should have and what it has."""
        prefixes = list(prefixes)
        roles = {address: self._role(status.config) for address, status in self.peers.items()}
        # Peers getting the same change share one command: a reflector's clients mostly do,
        # and ExaBGP spends about as long parsing a command as sending its UPDATE.
        announces: dict[tuple[Export, tuple[IPNetwork, ...]], list[IPAddress]] = {}
        withdraws: dict[tuple[IPNetwork, ...], list[IPAddress]] = {}
        for address, status in self.peers.items():
            if status.pending:
                continue  # added by a reload: ExaBGP does not know it yet
            sent = self._out[address]
            target, export = roles[address], status.config.export
            announce: dict[Export, list[IPNetwork]] = {}
            withdraw: list[IPNetwork] = []
            for prefix in prefixes:
                want = self._desired(address, target, export, prefix, roles)
                if want == sent.get(prefix):
                    continue
                if want is None:
                    del sent[prefix]
                    withdraw.append(prefix)
                else:
                    sent[prefix] = want
                    announce.setdefault(want, []).append(prefix)
            if withdraw:
                withdraws.setdefault(tuple(withdraw), []).append(address)
            for export_attrs, group in announce.items():
                announces.setdefault((export_attrs, tuple(group)), []).append(address)
        for withdrawn, peers in withdraws.items():
            self._queue(commands.withdraw(peers, withdrawn))
        for (export_attrs, announced), peers in announces.items():
            self._queue(commands.announce(peers, announced, export_attrs))

    def _announce_everything(self) -> None:
        """A new ExaBGP knows nothing: give it every peer's Adj-RIB-Out again."""
        for address, sent in self._out.items():
            grouped: dict[Export, list[IPNetwork]] = {}
            for prefix, export in sent.items():
                grouped.setdefault(export, []).append(prefix)
            for export, group in grouped.items():
                self._queue(commands.announce([address], group, export))

    # --- ExaBGP channel ---------------------------------------------------------

    async def _on_channel(self, channel: Channel) -> None:
        self.pump.attach(channel)
        for status in self.peers.values():
            status.up_in_channel = False
            status.eor_sent = False
            status.eor.clear()
        # a new ExaBGP is our restart as far as peers can tell: defer our End-of-RIBs again
        self._deferral_expired = False
        if self._deferral_timer is not None:
            self._deferral_timer.cancel()
        self._deferral_timer = asyncio.get_running_loop().call_later(
            self.cfg.bgp.graceful_restart.select_defer_time, self._deferral_over
        )
        self._announce_everything()
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(self._read_loop(channel), name="bgp-reader"))

    def _queue(self, lines: Iterable[str]) -> None:
        self.pump.queue(lines)

    async def _read_loop(self, channel: Channel) -> None:
        pending = b""
        try:
            while chunk := await channel.reader.read(READ_CHUNK):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                changes: Changes = {}
                for raw in lines:
                    self._handle_line(raw, changes)
                self._program(changes)
                # only now: an End-of-RIB queued before this chunk's announcements would tell
                # a peer to sweep routes that are about to be sent to it
                self._send_due_eors()
        finally:
            channel.close()
            if self.pump.channel is channel:
                self.pump.channel = None
                self._channel_lost()

    def _handle_line(self, raw: bytes, changes: Changes) -> None:
        try:
            ev = parse_line(raw.decode(errors="replace"))
        except MessageError as exc:
            self.counters["messages_dropped"] += 1
            log.warning(event("exabgp_message_dropped", reason=exc, line=raw[:200].decode(errors="replace")))
            return
        if ev is None:
            return
        self.counters["messages"] += 1
        try:
            self._handle(ev, changes)
        except Exception:  # a bad update must never take the daemon down
            self.counters["messages_dropped"] += 1
            log.exception(event("bgp_event_failed", event_type=type(ev).__name__))

    def _handle(self, ev: Event, changes: Changes) -> None:
        if isinstance(ev, CommandAnswer):
            self.pump.answered(ev.ok, ev.text)
            return
        status = self.peers.get(ev.peer)
        if status is None:
            log.warning(event("bgp_unknown_peer", peer=ev.peer, message=type(ev).__name__))
            return
        if status.pending:  # ExaBGP has taken the reloaded config: the peer gets its routes
            status.pending = False
            self._refresh(self._every_prefix())
        if isinstance(ev, PeerOpen):
            self._peer_open(status, ev, changes)
        elif isinstance(ev, PeerState):
            self._peer_state(status, ev, changes)
        elif isinstance(ev, RouteUpdate):
            status.updates += 1
            if status.held_down:
                return  # torn down for max prefixes: what was still in flight is ignored
            peer = Peer(ev.peer, ev.peer_asn, self.cfg.asn, status.router_id)
            self._merge(changes, self.rib.update(peer, self._within_limit(status, ev), ev.withdrawn))
        elif isinstance(ev, EndOfRib):
            status.eor.add(ev.family)
            log.info(event("bgp_end_of_rib_received", peer=ev.peer, family=ev.family))
            self._end_of_rib(status, ev, changes)
            self._check_ready()
        elif isinstance(ev, Notification):
            status.notified = True
            status.last_error = f"NOTIFICATION {ev.code}/{ev.subcode} received {ev.data}".strip()
            log.warning(
                event("bgp_notification", peer=ev.peer, code=ev.code, subcode=ev.subcode, data=ev.data)
            )

    def _graceful_locally(self, status: PeerStatus) -> bool:
        return self.cfg.graceful_restart_with(status.config)

    def _peer_open(self, status: PeerStatus, ev: PeerOpen, changes: Changes) -> None:
        status.router_id = ev.router_id
        status.graceful, status.families = ev.graceful_restart, ev.families
        status.notified = False
        if not self.rib.stale_count(ev.peer):
            return
        # RFC 4724 4.2: a peer back without forwarding state for a family lost those routes
        capability = ev.graceful_restart if self._graceful_locally(status) else None
        for version in sorted(graceful.versions_without_forwarding(capability)):
            swept = self.rib.sweep_stale(ev.peer, version)
            if swept:
                changes.update(swept)
                log.warning(
                    event(
                        "bgp_stale_flushed",
                        peer=ev.peer,
                        ipv=version,
                        routes=len(swept),
                        reason="no forwarding state",
                    )
                )
        self._stale_timer_check(status)

    def _peer_state(self, status: PeerStatus, ev: PeerState, changes: Changes) -> None:
        previous = status.state
        status.state, status.since = ev.state, time.time()
        if ev.state == "up" or previous == "up":
            status.unestablished_since, status.md5_baseline, status.hint = time.time(), None, ""
        if ev.state == "up":
            status.up_in_channel = True
            status.eor.clear()
            status.eor_sent = False
            stale = self.rib.stale_count(ev.peer)
            if stale:  # back from its restart: now its End-of-RIB is awaited, for so long
                self._arm_stale_timer(status, self.cfg.bgp.graceful_restart.stalepath_time, STALEPATH_TIMER)
            log.info(
                event(
                    "bgp_session_up", peer=ev.peer, asn=ev.peer_asn, router_id=status.router_id, stale=stale
                )
            )
            self._update_headless()
        elif ev.state == "down" and (status.up_in_channel or previous == "up"):
            status.up_in_channel = False
            status.flaps += 1
            if ev.reason and not status.notified:
                status.last_error = ev.reason
            verdict = graceful.on_session_down(
                status.graceful, self._graceful_locally(status), status.notified
            )
            status.notified = False
            if verdict.action is graceful.DownAction.KEEP_STALE:
                kept = self.rib.mark_stale(ev.peer)
                changes.update(kept)
                self._arm_stale_timer(status, verdict.restart_time, RESTART_TIMER)
                log.warning(
                    event(
                        "bgp_session_down",
                        peer=ev.peer,
                        reason=ev.reason,
                        action="keeping its routes as stale",
                        stale=self.rib.stale_count(ev.peer),
                        restart_time=verdict.restart_time,
                    )
                )
            else:
                self._cancel_stale_timer(status)
                withdrawn = self.rib.peer_down(ev.peer)
                changes.update(withdrawn)
                log.warning(
                    event(
                        "bgp_session_down",
                        peer=ev.peer,
                        reason=ev.reason,
                        action="withdrawing its routes",
                        why=verdict.why,
                        withdrawn=len(withdrawn),
                    )
                )
            self._update_headless()

    # --- sessions that do not come up ----------------------------------------------------

    async def _watch_sessions(self, interval: float = 5.0) -> None:
        """Say why a session may not be coming up: TCP-MD5 failures are silent on both sides
        but for the kernel's counters, which this compares with those when it went down."""
        while True:
            await asyncio.sleep(interval)
            counters = self._md5_drops()
            now = time.time()
            for address, status in self.peers.items():
                if status.state == "up" or status.held_down:
                    continue
                if status.md5_baseline is None:
                    status.md5_baseline = counters
                drops = {k: v - status.md5_baseline.get(k, 0) for k, v in counters.items()}
                uses_md5 = status.config.uses_md5  # (not the file's contents: read at render only)
                hint = establish_hint(
                    uses_md5, now - status.unestablished_since, drops, status.config.ttl_security
                )
                if hint and hint != status.hint:
                    log.warning(
                        event(
                            "bgp_session_not_establishing",
                            peer=address,
                            down_s=round(now - status.unestablished_since),
                            md5="yes" if uses_md5 else "no",
                            hint=hint,
                        )
                    )
                status.hint = hint

    # --- BFD ---------------------------------------------------------------------------------

    def bfd_state(self, peer: str, state: str, diag: str) -> None:
        """The BFD process says a peer's forwarding path changed. Down after Up: its routes go at
        once, fresh or kept through a graceful restart (a dead path is not a restart, RFC 5882
        §4.3), and its session is closed; ExaBGP opens it again when the path is back."""
        address = ip_address(peer)
        status = self.peers.get(address)
        if status is None:
            return
        previous, status.bfd = status.bfd, state
        if state == "up" or previous != "up" or diag == "neighbor_admin_down":
            log.info(event("bfd_state", peer=peer, state=state, diag=diag))
            return
        withdrawn = self._drop_routes(status)
        status.last_error = f"BFD down ({diag.replace('_', ' ')}): its forwarding path is lost"
        log.warning(
            event("bfd_down", peer=peer, diag=diag, withdrawn=withdrawn, action="routes withdrawn at once")
        )
        if status.state == "up":
            self._queue([commands.teardown([address], 2)])

    # --- max prefixes -------------------------------------------------------------------

    def _within_limit(self, status: PeerStatus, ev: RouteUpdate) -> tuple[limits.Announcement, ...]:
        """What of an UPDATE its peer's max_prefixes lets in, acting on a crossing once."""
        limit = status.config.max_prefixes
        if limit is None:
            return ev.announced
        held = self.rib.holds(ev.peer)
        if ev.withdrawn:
            held = set(held) - set(ev.withdrawn)
        verdict = limits.admit(limit, held, ev.announced)
        if verdict.dropped:
            self.rejections[ev.peer]["max prefixes"] += verdict.dropped
        if verdict.exceeded and not status.over_limit:
            self._crossed(status, verdict.held)
        elif not verdict.exceeded and status.over_limit and not status.held_down:
            status.over_limit = False
            log.warning(event("bgp_max_prefixes_cleared", peer=ev.peer, limit=limit.limit, held=verdict.held))
        return verdict.kept

    def _crossed(self, status: PeerStatus, held: int) -> None:
        """The peer holds (or would) more than its max_prefixes: say so once, and act."""
        limit, address = status.config.max_prefixes, status.config.address
        assert limit is not None
        status.over_limit = True
        log.error(
            event(
                "bgp_max_prefixes", peer=address, limit=limit.limit, received=held, action=limit.action.value
            )
        )
        if limit.action is MaxPrefixAction.TEARDOWN and not status.held_down:
            status.held_until = float("inf")
            task = asyncio.create_task(self._hold_down(status, held), name=f"hold-down-{address}")
            task.add_done_callback(_log_failure)
            self._tasks.append(task)

    async def _hold_down(self, status: PeerStatus, received: int) -> None:
        """Cease 6/1 (RFC 4486), its routes gone at once (not kept as stale), the neighbour out
        of ExaBGP's config for `restart_after` seconds, then back."""
        address, limit = status.config.address, status.config.max_prefixes
        assert limit is not None
        hold = limit.restart_after
        self._drop_routes(status)
        if status.state == "up":
            await self._tear_down([address], MAX_PREFIXES_SUBCODE, timeout=10)
        status.last_error = (  # after the session's own "notification sent" reason
            f"sent {received} prefixes, over its max_prefixes {limit.limit}: closed with Cease 6/1, "
            + (f"held down for {hold}s" if hold else "held down until a reload")
        )
        self._cancel_stale_timer(status)  # the one its session's end armed meanwhile
        status.held_until = time.time() + hold if hold else float("inf")
        status.pending, self._out[address] = True, {}  # ExaBGP forgets it: everything is sent again
        self.supervisor.reload_config()
        if hold:
            await asyncio.sleep(hold)
            self._release(address)

    def _limit_changed(self, status: PeerStatus) -> None:
        """A reload changed the peer's max_prefixes: judge what it holds now by the new one."""
        limit, address = status.config.max_prefixes, status.config.address
        if status.held_down and (limit is None or limit.action is not MaxPrefixAction.TEARDOWN):
            self._release(address)
            return
        held = len(self.rib.holds(address))
        status.over_limit = False
        if limit is None or held <= limit.limit:
            return
        self._crossed(status, held)
        if limit.action is MaxPrefixAction.DROP:
            log.warning(
                event(
                    "bgp_max_prefixes_not_retroactive",
                    peer=address,
                    held=held,
                    fix="its next announcements are dropped; reset its session to keep only the first",
                )
            )

    def _release(self, address: IPAddress) -> None:
        status = self.peers.get(address)
        if status is None or not status.held_down:
            return
        status.held_until, status.over_limit = None, False
        log.warning(event("bgp_max_prefixes_released", peer=address))
        self.supervisor.reload_config()

    def _drop_routes(self, status: PeerStatus) -> int:
        """Withdraw every route of a peer at once, fresh or kept as stale; how many went."""
        self._cancel_stale_timer(status)
        withdrawn = self.rib.peer_down(status.config.address)
        self._program(withdrawn)
        return len(withdrawn)

    def _held_down(self) -> set[IPAddress]:
        return {address for address, status in self.peers.items() if status.held_down}

    # --- graceful restart: stale paths and their timers ----------------------------

    def _channel_lost(self) -> None:
        """Our ExaBGP died: every session went with it, but the kernel still forwards.
        Each peer's paths stay as stale until its new session's End-of-RIB or our restart time."""
        changes: Changes = {}
        for address, status in self.peers.items():
            if status.state == "up":
                status.unestablished_since, status.md5_baseline = time.time(), None
            status.state, status.up_in_channel, status.since = "idle", False, time.time()
            status.notified = False
            if self.rib.adj_rib_in(address):
                changes.update(self.rib.mark_stale(address))
                self._arm_stale_timer(status, self.cfg.bgp.graceful_restart.restart_time, RESTART_TIMER)
        log.warning(
            event(
                "exabgp_channel_lost",
                stale_peers=len(self.rib.stale_peers()),
                stale=self.rib.stale_count(),
                action="keeping routes as stale",
            )
        )
        self._update_headless()
        self._program(changes)

    def _arm_stale_timer(self, status: PeerStatus, seconds: float, kind: str) -> None:
        self._cancel_stale_timer(status)
        address = status.config.address
        loop = asyncio.get_running_loop()
        self._stale_timers[address] = loop.call_later(seconds, self._stale_expired, address, kind)
        status.stale_until, status.stale_timer = time.time() + seconds, kind

    def _cancel_stale_timer(self, status: PeerStatus) -> None:
        timer = self._stale_timers.pop(status.config.address, None)
        if timer:
            timer.cancel()
        status.stale_until, status.stale_timer = None, ""

    def _stale_timer_check(self, status: PeerStatus) -> None:
        if not self.rib.stale_count(status.config.address):
            self._cancel_stale_timer(status)

    def _stale_expired(self, address: IPAddress, kind: str) -> None:
        status = self.peers[address]
        self._stale_timers.pop(address, None)
        status.stale_until, status.stale_timer = None, ""
        if kind == RESTART_TIMER and self._long_lived(status):
            # in the spirit of RFC 9494, as local policy (ExaBGP cannot carry the LLGR
            # capability): a reflector away this long still beats no route at all
            changes = self.rib.mark_stale(address, Staleness.LONG_LIVED)
            keep = self.cfg.bgp.long_lived_stale_time
            self._arm_stale_timer(status, keep, LONG_LIVED_TIMER)
            log.warning(
                event("bgp_long_lived_stale", peer=address, routes=self.rib.stale_count(address), keep_s=keep)
            )
            self._program(changes)
            return
        changes = self.rib.sweep_stale(address)
        log.warning(event("bgp_stale_expired", peer=address, timer=kind, withdrawn=len(changes)))
        self._program(changes)

    def _end_of_rib(self, status: PeerStatus, ev: EndOfRib, changes: Changes) -> None:
        version = graceful.FAMILY_VERSIONS.get(ev.family)
        if version is None:
            return
        swept = self.rib.sweep_stale(ev.peer, version)
        changes.update(swept)
        if swept:
            log.info(event("bgp_stale_swept", peer=ev.peer, family=ev.family, withdrawn=len(swept)))
        self._stale_timer_check(status)

    # --- graceful restart: our End-of-RIB -------------------------------------------

    def _deferral_over(self) -> None:
        self._deferral_expired = True
        waiting = [str(a) for a, s in self.peers.items() if not s.eor]
        if waiting and self.cfg.role is NodeRole.REFLECTOR:
            log.warning(event("bgp_select_deferral_expired", without_end_of_rib_from=",".join(waiting)))
        self._send_due_eors()

    def _send_due_eors(self) -> None:
        if self.pump.channel is None:
            return
        received = [address for address, s in self.peers.items() if s.eor]
        # restarting peers that may wait for our End-of-RIB before sending theirs (another
        # reflector): not waited for, or two reflectors restarted together would deadlock. A
        # restarting client is waited for: it sends its own as soon as its table is in.
        restarting = [
            a
            for a, s in self.peers.items()
            if s.state == "up"
            and s.graceful is not None
            and s.graceful.restarted
            and s.config.kind is not PeerKind.CLIENT
        ]
        for address, status in self.peers.items():
            if status.state != "up" or status.eor_sent:
                continue
            if graceful.eor_due(
                local_ready=self._local_ready,
                reflects=self.cfg.role is NodeRole.REFLECTOR,
                target=address,
                peers=list(self.peers),
                eor_received=received,
                deferral_expired=self._deferral_expired,
                restarting=restarting,
            ):
                status.eor_sent = True
                families = sorted(status.families & set(graceful.FAMILY_VERSIONS))
                self._queue(commands.end_of_rib([address], family) for family in families)
                log.info(event("bgp_end_of_rib_sent", peer=address, families=",".join(families)))

    # --- RIB -> FIB ----------------------------------------------------------------

    def _merge(self, changes: Changes, result: UpdateResult) -> None:
        changes.update(result.changes)
        for prefix in result.touched:
            self._report_conflict(self.conflicts.paths(prefix, self.rib.paths(prefix)))
        for rejected in result.rejected:
            reason = rejected.reason.value
            self.counters[f"rejected:{reason}"] += 1
            counts = self.rejections.get(rejected.peer)
            if counts is not None:
                counts[reason] += 1
            if self._report_conflict(self.conflicts.rejected(rejected)) or rejected.reason in HIJACK_REASONS:
                continue
            # a flood of refusals must not become a flood of log lines: the first few are logged,
            # the rest counted (routed status --json, routed_bgp_prefixes_rejected_total)
            seen = counts[reason] if counts is not None else 1
            if seen <= LOGGED_REJECTIONS:
                log.warning(
                    event("bgp_route_rejected", peer=rejected.peer, prefix=rejected.prefix, reason=reason)
                )
            elif seen == LOGGED_REJECTIONS + 1:
                log.warning(
                    event(
                        "bgp_route_rejections_counted",
                        peer=rejected.peer,
                        reason=reason,
                        logged=LOGGED_REJECTIONS,
                        more="counted in routed status --json and routed_bgp_prefixes_rejected_total",
                    )
                )

    def _program(self, changes: Changes, also: Iterable[IPNetwork] = ()) -> None:
        """Hand RIB changes to the FIB and to every peer's Adj-RIB-Out."""
        self._refresh(set(changes) | set(also))
        if changes and self.cfg.installs_learned_routes:
            self.sink.best_paths(changes)

    def _report_conflict(self, conflict: Conflict | None) -> bool:
        if conflict is None:
            return False
        self.counters["address_conflicts"] += 1
        log.error(
            event(
                "address_conflict",
                prefix=conflict.prefix,
                kind=conflict.kind,
                nodes=",".join(conflict.nodes),
                action="kept ours, refused theirs" if conflict.kind == HIJACK else "both announced",
                fix="give each node its own blocks (ipam) and never --ip inside another node's block",
            )
        )
        return True

    def _announced_by(self, prefix: IPNetwork, node: str) -> bool:
        return any(
            (path := self.rib.announces(address, prefix)) is not None and str(origin(path)) == node
            for address in self.peers
        )

    # --- status -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = time.time()
        peers = [
            s.json(
                now,
                asn=s.config.asn if s.config.asn is not None else self.cfg.asn,
                graceful_locally=self._graceful_locally(s),
                received=self.rib.received_count(address),
                accepted=self.rib.accepted_count(address),
                announced=len(self._out.get(address, {})),
                stale=self.rib.stale_count(address),
                rejections=self.rejections.get(address, {}),
            )
            for address, s in self.peers.items()
        ]
        return {
            "peers": peers,
            "loc_rib": self.rib.loc_rib_size(),
            "announced": len(self.local),
            "stale": self.rib.stale_count(),
            "draining": self.me.draining,
            "headless_since": round(self.headless_since, 3) if self.headless_since else None,
            "rejected": {r.value: n for r, n in self.rib.rejected_total.items()},
            "conflicts": self._conflicts_json(),
            "counters": dict(self.counters),
            "exabgp": {
                "pid": self.supervisor.process.pid if self.supervisor.process else None,
                "restarts": self.supervisor.restarts,
            },
            "ready": self.ready.is_set(),
        }

    def _conflicts_json(self) -> dict[str, object]:
        self.conflicts.prune_hijacks(self._announced_by)
        return self.conflicts.json()

    def block_owner(self, ip: IPAddress) -> tuple[IPNetwork, str] | None:
        """Who else announces a block holding `ip`: (the block, that node's next hop).
        A /32 announced by another node is not an owner: the same address on several hosts
        can be anycast on purpose (and is reported as a conflict, not refused)."""
        prefix = ip_network((ip, self.cfg.ipam.block_length(ip.version)), strict=False)
        selection = self.rib.selection(prefix)
        return (prefix, str(selection.best.attrs.next_hop)) if selection is not None else None

    def route_details(self, prefix: IPNetwork) -> dict[str, Any] | None:
        selection: Selection | None = self.rib.selection(prefix)
        if selection is None:
            return None
        best = selection.best
        return {
            "source": "bgp",
            "peer": str(best.peer.address),
            "reason": selection.reason.value,
            "paths": len(self.rib.paths(prefix)),  # accepted candidates the best was chosen from
            "next_hops": [str(h) for h in selection.next_hops],
            "as_path": [a for seg in best.attrs.as_path for a in seg.asns],
            "local_pref": best.attrs.local_pref,
            "med": best.attrs.med,
            "communities": [f"{a}:{b}" for a, b in best.attrs.communities],
            "originator_id": str(best.attrs.originator_id) if best.attrs.originator_id else None,
            "cluster_list": [str(c) for c in best.attrs.cluster_list],
            "stale": best.stale.name.lower() if best.stale else None,
        }
