"""The node's BGP speaker: ExaBGP events in, RIB and FIB updates out, our workloads announced.

Event-driven throughout: a workload change is announced the moment it happens,
received updates are applied to the RIB and handed to the FIB reconciler in
batches (one per chunk read from ExaBGP), never polled.

When ExaBGP itself dies, learned routes stay in the FIB as stale (traffic keeps
flowing); once the restarted ExaBGP's sessions send End-of-RIB, the stale
routes that were not announced again are swept. A session going down while
ExaBGP runs withdraws that peer's routes at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bgp import reflection
from bgp.decision import Selection
from bgp.exabgp import commands
from bgp.exabgp.config import render_config, render_environment
from bgp.exabgp.messages import MessageError, parse_line
from bgp.exabgp.process import Channel, ExaBgpSupervisor
from bgp.model import (
    CommandAnswer,
    EndOfRib,
    Event,
    IPAddress,
    IPNetwork,
    Notification,
    Peer,
    PeerOpen,
    PeerState,
    RouteUpdate,
)
from bgp.policy import ImportPolicy
from bgp.reflection import Role
from bgp.rib import Changes, Rib, UpdateResult
from routed.config import NodeConfig, PeerKind
from routed.config import Peer as PeerConfig
from routed.config.schema import ExportMode
from routed.fib.reconciler import Reconciler
from routed.fib.routes import RouteKey, gateway_route
from routed.log import event

log = logging.getLogger("bgp.speaker")

ACK_WINDOW = 64  # commands in flight before we wait for ExaBGP's answers
READ_CHUNK = 1 << 20


@dataclass(slots=True)
class PeerStatus:
    config: PeerConfig
    state: str = "idle"
    since: float = field(default_factory=time.time)
    router_id: IPv4Address | None = None
    eor: set[str] = field(default_factory=set)
    up_in_channel: bool = False
    updates: int = 0


class Speaker:
    def __init__(self, cfg: NodeConfig, fib: Reconciler, runtime_dir: Path) -> None:
        self.cfg = cfg
        self.fib = fib
        self.table = cfg.fib.table
        self.policy = ImportPolicy(
            pools=tuple(cfg.pools),
            router_id=cfg.router_id,
            local_asn=cfg.asn,
            own_addresses=frozenset({cfg.fabric.address, cfg.router_id}),
            cluster_id=cfg.effective_cluster_id,
            allowed=tuple(cfg.bgp.import_allow),
            allow_default=cfg.bgp.allow_default_route,
        )
        self.rib = Rib(self.policy, cfg.bgp.max_paths)
        self.peers: dict[IPAddress, PeerStatus] = {p.address: PeerStatus(p) for p in cfg.resolved_peers()}
        self.local: set[IPNetwork] = set()
        self.me = reflection.Speaker(
            router_id=cfg.router_id,
            asn=cfg.asn,
            cluster_id=cfg.effective_cluster_id,
            local_pref=cfg.bgp.local_preference,
            communities=tuple((int(a), int(b)) for a, b in (c.split(":") for c in cfg.bgp.communities)),
            pools=tuple(cfg.pools),
        )
        # Adj-RIB-Out: what each peer has been sent, so only differences go out
        self._out: dict[IPAddress, dict[IPNetwork, commands.Export]] = {a: {} for a in self.peers}
        self.supervisor = ExaBgpSupervisor(
            runtime_dir, lambda path: render_config(cfg, path), render_environment(cfg), self._on_channel
        )
        self._channel: Channel | None = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._in_flight: deque[str] = deque()
        self._window_open = asyncio.Event()
        self._window_open.set()
        self._stale: dict[IPAddress, set[IPNetwork]] = {}
        self._stale_timers: dict[IPAddress, asyncio.TimerHandle] = {}
        self._logged_rejections: set[tuple[IPAddress, IPNetwork, str]] = set()
        self.counters: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[Any]] = []
        self.ready = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------

    async def run(self) -> None:
        if not self.peers:
            self._mark_ready("no peers")
            await asyncio.Event().wait()  # nothing to speak to: no ExaBGP at all
        loop = asyncio.get_running_loop()
        timeout = self.cfg.bgp.graceful_restart.restart_time
        ready_timer = loop.call_later(timeout, self._mark_ready, f"no End-of-RIB within {timeout}s")
        writer = asyncio.create_task(self._write_loop(), name="bgp-writer")
        self._refresh(self.cfg.pools)  # aggregates for peers that get `export: aggregate`
        try:
            await self._wait_for_fabric_address()
            await self.supervisor.run()
        finally:
            ready_timer.cancel()
            writer.cancel()
            for task in self._tasks:
                task.cancel()

    async def stop(self) -> None:
        await self.supervisor.stop()

    async def _wait_for_fabric_address(self) -> None:
        """ExaBGP cannot listen on an address the host does not have yet (a node still booting)."""
        from routed.dataplane.netns import async_iproute

        address = str(self.cfg.fabric.address)
        logged = False
        async with async_iproute() as ipr:
            while True:
                present = [a async for a in await ipr.addr("dump") if a.get("address") == address]
                if present:
                    return
                if not logged:
                    log.warning(
                        event(
                            "bgp_waiting_for_fabric_address",
                            address=address,
                            interface=self.cfg.fabric.interface,
                        )
                    )
                    logged = True
                await asyncio.sleep(0.2)

    def _mark_ready(self, why: str) -> None:
        if not self.ready.is_set():
            self.ready.set()
            self.fib.mark_ready("bgp")
            log.info(event("bgp_ready", reason=why))

    # --- what we announce ------------------------------------------------------

    def set_local_prefixes(self, prefixes: Iterable[IPNetwork]) -> None:
        wanted = set(prefixes)
        changed = wanted ^ self.local
        self.local = wanted
        if not changed:
            return
        changes: Changes = {}
        self._merge(changes, self.rib.set_policy(self.policy.with_local_prefixes(wanted), changed))
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
    ) -> commands.Export | None:
        if prefix.version != address.version:
            return None  # next hops are session addresses: each family over its own sessions
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
        announces: dict[tuple[commands.Export, tuple[IPNetwork, ...]], list[IPAddress]] = {}
        withdraws: dict[tuple[IPNetwork, ...], list[IPAddress]] = {}
        for address, status in self.peers.items():
            sent = self._out[address]
            target, export = roles[address], status.config.export
            announce: dict[commands.Export, list[IPNetwork]] = {}
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
            grouped: dict[commands.Export, list[IPNetwork]] = {}
            for prefix, export in sent.items():
                grouped.setdefault(export, []).append(prefix)
            for export, group in grouped.items():
                self._queue(commands.announce([address], group, export))

    # --- ExaBGP channel ---------------------------------------------------------

    async def _on_channel(self, channel: Channel) -> None:
        self._channel = channel
        self._in_flight.clear()
        self._window_open.set()
        for status in self.peers.values():
            status.up_in_channel = False
        self._announce_everything()
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(self._read_loop(channel), name="bgp-reader"))

    def _queue(self, lines: Iterable[str]) -> None:
        for line in lines:
            self._outbox.put_nowait(line)

    async def _write_loop(self) -> None:
        while True:
            line = await self._outbox.get()
            while True:
                await self._window_open.wait()
                channel = self._channel
                if channel is not None and not channel.writer.is_closing():
                    break
                await asyncio.sleep(0.1)  # no ExaBGP right now; the next channel re-announces anyway
            try:
                channel.writer.write(line.encode() + b"\n")
                await channel.writer.drain()
            except (ConnectionError, OSError):
                continue
            self._in_flight.append(line)
            self.counters["commands_sent"] += 1
            if len(self._in_flight) >= ACK_WINDOW:
                self._window_open.clear()

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
        finally:
            channel.close()  # lets the relay go
            if self._channel is channel:
                self._channel = None
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
            sent = self._in_flight.popleft() if self._in_flight else "?"
            if not ev.ok:
                self.counters["commands_failed"] += 1
                log.error(event("exabgp_command_failed", answer=ev.text, command=sent[:300]))
            if len(self._in_flight) < ACK_WINDOW:
                self._window_open.set()
            return
        status = self.peers.get(ev.peer)
        if status is None:
            log.warning(event("bgp_unknown_peer", peer=ev.peer, message=type(ev).__name__))
            return
        if isinstance(ev, PeerOpen):
            status.router_id = ev.router_id
        elif isinstance(ev, PeerState):
            self._peer_state(status, ev, changes)
        elif isinstance(ev, RouteUpdate):
            status.updates += 1
            peer = Peer(ev.peer, ev.peer_asn, self.cfg.asn, status.router_id)
            stale = self._stale.get(ev.peer)
            if stale:
                stale.difference_update(ev.withdrawn)
                stale.difference_update(p for p, _ in ev.announced)
            self._merge(changes, self.rib.update(peer, ev.announced, ev.withdrawn))
        elif isinstance(ev, EndOfRib):
            status.eor.add(ev.family)
            self._sweep_stale(ev.peer, ev.family, changes)
            if all(s.eor for s in self.peers.values()):
                self._mark_ready("End-of-RIB from every peer")
        elif isinstance(ev, Notification):
            log.warning(
                event("bgp_notification", peer=ev.peer, code=ev.code, subcode=ev.subcode, data=ev.data)
            )

    def _peer_state(self, status: PeerStatus, ev: PeerState, changes: Changes) -> None:
        previous = status.state
        status.state, status.since = ev.state, time.time()
        if ev.state == "up":
            status.up_in_channel = True
            status.eor.clear()
            log.info(event("bgp_session_up", peer=ev.peer, asn=ev.peer_asn, router_id=status.router_id))
        elif ev.state == "down" and (status.up_in_channel or previous == "up"):
            status.up_in_channel = False
            self._drop_stale(ev.peer)
            withdrawn = self.rib.peer_down(ev.peer)
            changes.update(withdrawn)
            log.warning(event("bgp_session_down", peer=ev.peer, reason=ev.reason, withdrawn=len(withdrawn)))

    # --- stale routes across an ExaBGP restart -----------------------------------

    def _channel_lost(self) -> None:
        loop = asyncio.get_running_loop()
        for address, status in self.peers.items():
            status.state, status.up_in_channel = "idle", False
            kept = set(self.rib.adj_rib_in(address))
            if kept:
                self._stale[address] = kept
                old = self._stale_timers.pop(address, None)
                if old:
                    old.cancel()
                self._stale_timers[address] = loop.call_later(
                    self.cfg.bgp.graceful_restart.restart_time, self._stale_expired, address
                )
        log.warning(
            event("exabgp_channel_lost", stale_peers=len(self._stale), action="keeping routes as stale")
        )

    def _stale_expired(self, address: IPAddress) -> None:
        if self._stale.pop(address, None) is not None:
            changes = self.rib.peer_down(address)
            log.warning(event("bgp_stale_expired", peer=address, withdrawn=len(changes)))
            self._program(changes)

    def _sweep_stale(self, address: IPAddress, family: str, changes: Changes) -> None:
        stale = self._stale.get(address)
        if not stale:
            return
        version = 4 if family.startswith("ipv4") else 6
        gone = [p for p in stale if p.version == version]
        stale.difference_update(gone)
        if not stale:
            self._drop_stale(address)
        if gone:
            peer = next(iter(self.rib.adj_rib_in(address).values())).peer
            self._merge(changes, self.rib.update(peer, withdrawn=gone))
            log.info(event("bgp_stale_swept", peer=address, family=family, withdrawn=len(gone)))

    def _drop_stale(self, address: IPAddress) -> None:
        self._stale.pop(address, None)
        timer = self._stale_timers.pop(address, None)
        if timer:
            timer.cancel()

    # --- RIB -> FIB ----------------------------------------------------------------

    def _merge(self, changes: Changes, result: UpdateResult) -> None:
        changes.update(result.changes)
        for rejected in result.rejected:
            self.counters[f"rejected:{rejected.reason.value}"] += 1
            key = (rejected.peer, rejected.prefix, rejected.reason.value)
            if key not in self._logged_rejections:
                self._logged_rejections.add(key)
                log.warning(
                    event(
                        "bgp_route_rejected",
                        peer=rejected.peer,
                        prefix=rejected.prefix,
                        reason=rejected.reason.value,
                    )
                )

    def _program(self, changes: Changes, also: Iterable[IPNetwork] = ()) -> None:
        """Hand RIB changes to the FIB and to every peer's Adj-RIB-Out."""
        self._refresh(set(changes) | set(also))
        if not changes or not self.cfg.installs_learned_routes:
            return
        upsert = []
        remove: list[RouteKey] = []
        for prefix, selection in changes.items():
            if selection is None:
                remove.append((self.table, prefix))
            else:
                upsert.append(gateway_route(prefix, selection.next_hops, self.table))
        self.fib.update_routes("bgp", upsert=upsert, remove=remove)

    # --- status -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "peers": [
                {
                    "address": str(address),
                    "kind": s.config.kind.value,
                    "asn": s.config.asn if s.config.asn is not None else self.cfg.asn,
                    "state": s.state,
                    "since": round(s.since, 3),
                    "router_id": str(s.router_id) if s.router_id else None,
                    "received": len(self.rib.adj_rib_in(address)),
                    "eor": sorted(s.eor),
                }
                for address, s in self.peers.items()
            ],
            "loc_rib": len(self.rib.loc_rib()),
            "announced": len(self.local),
            "rejected": {r.value: n for r, n in self.rib.rejected_total.items()},
            "counters": dict(self.counters),
            "exabgp": {
                "pid": self.supervisor.process.pid if self.supervisor.process else None,
                "restarts": self.supervisor.restarts,
            },
            "ready": self.ready.is_set(),
        }

    def route_details(self, prefix: IPNetwork) -> dict[str, Any] | None:
        selection: Selection | None = self.rib.selection(prefix)
        if selection is None:
            return None
        best = selection.best
        return {
            "source": "bgp",
            "peer": str(best.peer.address),
            "reason": selection.reason.value,
            "next_hops": [str(h) for h in selection.next_hops],
            "as_path": [a for seg in best.attrs.as_path for a in seg.asns],
            "local_pref": best.attrs.local_pref,
            "med": best.attrs.med,
            "communities": [f"{a}:{b}" for a, b in best.attrs.communities],
            "originator_id": str(best.attrs.originator_id) if best.attrs.originator_id else None,
            "cluster_list": [str(c) for c in best.attrs.cluster_list],
        }
