"""The kernel's routing table behind a small interface, and its rtnetlink implementation.

The reconciler only sees `Kernel`; unit tests give it a fake, the daemon gives it
`NetlinkKernel`. Every request carries ROUTE_PROTOCOL, and deletions name it, so
the kernel itself refuses to delete a route of another protocol.

Routes travel as raw rtnetlink messages (routed/fib/rtnl.py), hundreds per system
call with one acknowledgement per batch; interface names come from pyroute2.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from routed.fib import rtnl
from routed.fib.plan import RoutePlan
from routed.fib.routes import ROUTE_PROTOCOL, NextHop, Route, RouteKey, link_local, unreachable_route, via
from routed.log import event
from routed.netns import async_iproute, netns_path, socket_in

log = logging.getLogger("routed.fib")

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # acknowledgements without a copy of the request
SO_RCVBUFFORCE = 33
RTMGRP_LINK, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE = 0x1, 0x40, 0x400
WORKLOAD_LINK_PREFIX = "rt"  # our workload veths: their routes are the workload manager's business
BATCH = 512  # requests per sendmsg; even if all fail, their answers fit the receive buffer
ACK_TIMEOUT = 10.0
ACK_BUFFER = 64 << 10  # answers are 36 bytes (NETLINK_CAP_ACK), one per datagram


@dataclass(slots=True)
class KernelView:
    """What the kernel holds in our table: our routes, and the foreign routes per prefix."""

    ours: dict[RouteKey, Route] = field(default_factory=dict)
    # Foreign routes per prefix, each identified by (protocol, metric): set semantics
    # keep the view right when an event repeats what a dump already showed.
    foreign: dict[RouteKey, set[tuple[int, int]]] = field(default_factory=dict)

    def foreign_keys(self) -> set[RouteKey]:
        return {key for key, routes in self.foreign.items() if routes}

    def apply_event(self, ev: RouteEvent) -> None:
        if ev.ours:
            if ev.added and ev.route is not None:
                self.ours[ev.key] = ev.route
            elif not ev.added:
                self.ours.pop(ev.key, None)
            return
        routes = self.foreign.setdefault(ev.key, set())
        if ev.added:
            routes.add(ev.foreign_id)
        else:
            routes.discard(ev.foreign_id)
            if not routes:
                del self.foreign[ev.key]


@dataclass(frozen=True, slots=True)
class RouteEvent:
    added: bool
    key: RouteKey
    ours: bool
    route: Route | None  # our route as the kernel now has it (None for foreign or deleted)
    foreign_id: tuple[int, int] = (0, 0)  # (protocol, metric) of a foreign route


@dataclass(frozen=True, slots=True)
class EventsLost:
    """The view may be stale, a full resync is due: the event socket overflowed or just opened,
    or a link went down or up (the kernel flushes routes through a link that goes down without
    telling anyone, and routes through it can be added again only once it is back)."""

    reason: str = "events lost"


@dataclass(frozen=True, slots=True)
class RouteFailure:
    route: Route
    action: str
    reason: str


class Kernel(Protocol):
    async def dump(self) -> KernelView: ...

    async def apply(self, plan: RoutePlan) -> list[RouteFailure]: ...

    def events(self) -> AsyncIterator[RouteEvent | EventsLost]: ...


class NetlinkKernel:
    """`Kernel` over rtnetlink: one request socket and one event socket, kept open."""

    def __init__(self, table: int, netns: str | None = None) -> None:
        self.table = table
        self._netns = netns
        self._sock: socket.socket | None = None
        self._seq = 0
        self._names: dict[int, str] = {}
        self._indexes: dict[str, int] = {}

    def _open(self, groups: int = 0) -> socket.socket:
        kind = (socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        sock = socket_in(netns_path(self._netns), *kind) if self._netns else socket.socket(*kind)
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        sock.bind((0, groups))
        sock.setblocking(False)
        return sock

    def _requests(self) -> socket.socket:
        if self._sock is None:
            self._sock = self._open()
        return self._sock

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        return self._seq

    # --- interface names (few, slow-changing: pyroute2) -----------------------

    async def _refresh_links(self) -> None:
        async with async_iproute(self._netns) as ipr:
            names = {link["index"]: link.get("ifname") async for link in await ipr.link("dump")}
        self._names = names
        self._indexes = {name: index for index, name in names.items()}

    async def _device_name(self, index: int) -> str:
        if index not in self._names:
            await self._refresh_links()
        return self._names.get(index, f"if{index}")

    async def _event(self, msg: rtnl.RouteMessage) -> RouteEvent | None:
        if msg.table != self.table or msg.cloned:
            return None
        key: RouteKey = (msg.table, msg.dst)
        added = msg.kind == rtnl.RTM_NEWROUTE
        if msg.protocol != ROUTE_PROTOCOL:
            return RouteEvent(added, key, False, None, (msg.protocol, msg.priority))
        if msg.route_type == rtnl.RTN_UNREACHABLE:
            return RouteEvent(added, key, True, unreachable_route(msg.dst, msg.table) if added else None)
        hops = [
            NextHop(device=await self._device_name(h.ifindex))
            if h.gateway is None
            else via(h.gateway, await self._device_name(h.ifindex))
            if h.ifindex and link_local(h.gateway)
            else via(h.gateway)
            for h in msg.hops
        ]
        # a route of ours of a type we never write (blackhole, prohibit) has no hops and so stays
        # out of the view: planning over it fails loudly (EEXIST) instead of guessing
        route = Route(dst=msg.dst, nexthops=tuple(hops), table=msg.table) if hops and added else None
        return RouteEvent(added, key, True, route)

    # --- dump ------------------------------------------------------------------------

    async def dump(self) -> KernelView:
        loop = asyncio.get_running_loop()
        sock = self._requests()
        await self._refresh_links()
        view = KernelView()
        for family in (socket.AF_INET, socket.AF_INET6):
            seq = self._next_seq()
            await loop.sock_sendall(sock, rtnl.dump_request(seq, family))
            done = False
            while not done:
                data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), ACK_TIMEOUT)
                for kind, _, msg_seq, payload in rtnl.messages(data):
                    if msg_seq != seq:
                        continue
                    if kind == rtnl.NLMSG_DONE:
                        done = True
                    elif kind == rtnl.NLMSG_ERROR:
                        raise OSError(rtnl.error_code(payload), "route dump failed")
                    elif kind == rtnl.RTM_NEWROUTE:
                        decoded = rtnl.decode(kind, payload)
                        ev = await self._event(decoded) if decoded else None
                        if ev is not None:
                            view.apply_event(ev)
        return view

    # --- apply -----------------------------------------------------------------------

    def _encode(self, action: str, route: Route, seq: int, ack: bool) -> bytes:
        if route.unreachable:
            return rtnl.encode(
                action, seq, route.dst, route.table, ROUTE_PROTOCOL, ack=ack, route_type=rtnl.RTN_UNREACHABLE
            )
        if route.is_link_scope:
            device = route.nexthops[0].device
            assert device is not None
            index = self._indexes.get(device)
            if index is None:
                raise LookupError(f"device {device} does not exist")
            return rtnl.encode(action, seq, route.dst, route.table, ROUTE_PROTOCOL, oif=index, ack=ack)
        if action == "delete":
            return rtnl.encode(action, seq, route.dst, route.table, ROUTE_PROTOCOL, ack=ack)
        hops = route.nexthops
        gateway = hops[0].gateway
        if len(hops) == 1 and gateway is not None and hops[0].device is None:  # the common case
            return rtnl.encode(
                action, seq, route.dst, route.table, ROUTE_PROTOCOL, gateways=(gateway,), ack=ack
            )
        gateways = tuple(h.gateway for h in hops if h.gateway is not None)
        if not route.pins_devices:
            return rtnl.encode(
                action, seq, route.dst, route.table, ROUTE_PROTOCOL, gateways=gateways, ack=ack
            )
        oifs = tuple(self._index_of(h.device) if h.device else 0 for h in route.nexthops)
        return rtnl.encode(
            action, seq, route.dst, route.table, ROUTE_PROTOCOL, gateways=gateways, ack=ack, gateway_oifs=oifs
        )

    def _index_of(self, device: str) -> int:
        index = self._indexes.get(device)
        if index is None:
            raise LookupError(f"device {device} does not exist")
        return index

    async def apply(self, plan: RoutePlan) -> list[RouteFailure]:
        if any(r.is_link_scope or r.pins_devices for r in (*plan.add, *plan.replace)):
            await self._refresh_links()
        steps: list[tuple[str, Route]] = [("add", r) for r in plan.add]
        steps += [("replace", r) for r in plan.replace]
        steps += [("delete", r) for r in plan.delete]
        failures: list[RouteFailure] = []
        for start in range(0, len(steps), BATCH):
            failures += await self._batch(steps[start : start + BATCH])
        return failures

    async def _batch(self, steps: Iterable[tuple[str, Route]]) -> list[RouteFailure]:
        """Send a batch of requests; only the last asks for an acknowledgement.

        The kernel answers a failed request whether or not it asked for an ack, and handles
        a batch in order: once the last request's answer is in, every request before it has
        been handled, and those that got no error succeeded. (One ack per request meant one
        datagram, one recv() and one answer to decode for each of 100k routes.)
        """
        loop = asyncio.get_running_loop()
        sock = self._requests()
        failures: list[RouteFailure] = []
        sent: dict[int, tuple[str, Route]] = {}
        chunks: list[bytes] = []
        for action, route in steps:
            seq = self._next_seq()
            try:
                chunks.append(self._encode(action, route, seq, ack=False))
            except LookupError as exc:
                failures.append(RouteFailure(route, action, str(exc)))
                continue
            sent[seq] = (action, route)
        if not sent:
            return failures
        last = next(reversed(sent))
        chunks[-1] = self._encode(*sent[last], last, ack=True)
        await loop.sock_sendall(sock, b"".join(chunks))
        try:
            async with asyncio.timeout(ACK_TIMEOUT):
                while last in sent:
                    try:
                        data = sock.recv(ACK_BUFFER)
                    except BlockingIOError:
                        data = await loop.sock_recv(sock, ACK_BUFFER)
                    self._check_answers(data, sent, last, failures)
        except (TimeoutError, OSError) as exc:
            # lost answers: we cannot tell what happened to the batch; the next resync will
            for action, route in sent.values():
                failures.append(RouteFailure(route, action, f"no acknowledgement ({exc!r})"))
        return failures

    @staticmethod
    def _check_answers(
        data: bytes, sent: dict[int, tuple[str, Route]], last: int, failures: list[RouteFailure]
    ) -> None:
        for kind, _, seq, payload in rtnl.messages(data):
            if kind != rtnl.NLMSG_ERROR or seq not in sent:
                continue
            code = rtnl.error_code(payload)
            action, route = sent[seq]
            if code and not (action == "delete" and code == errno.ESRCH):
                reason = f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"
                failures.append(RouteFailure(route, action, reason))
            if seq == last:
                sent.clear()  # everything before it was handled too
            else:
                del sent[seq]

    # --- events ---------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[RouteEvent | EventsLost]:
        loop = asyncio.get_running_loop()
        listener = self._open(RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE)
        usable: dict[int, bool] = {}  # per link index, whether it was up with carrier
        # Our own changes come back as events too (100k of them for a full table); the
        # reconciler already knows them from the acknowledgements, so the kernel drops them.
        port_id, _ = self._requests().getsockname()
        rtnl.drop_messages_from(listener, port_id)
        try:
            # Changes made before the subscription took effect are not in any event:
            # tell the reconciler to read the kernel afresh now that nothing can slip by.
            yield EventsLost()
            while True:
                try:
                    data = await loop.sock_recv(listener, 1 << 22)
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    log.warning(event("netlink_events_lost", reason="receive buffer overflow"))
                    yield EventsLost()
                    continue
                for kind, _, _, payload in rtnl.messages(data):
                    if kind in (rtnl.RTM_NEWLINK, rtnl.RTM_DELLINK):
                        index, name, up, port = rtnl.link_state(payload)
                        up = up and kind == rtnl.RTM_NEWLINK
                        was = usable.get(index)
                        usable[index] = up
                        # a workload's veth is the workloads' business; a bridge's or bond's
                        # port (Docker's and podman's container veths) carries no route: only
                        # a link a route could go through makes the kernel's routes worth a
                        # fresh read
                        if was != up and not name.startswith(WORKLOAD_LINK_PREFIX) and not port:
                            log.info(event("link_changed", link=name, up=up, action="full resync"))
                            yield EventsLost(f"link {name} {'up' if up else 'down'}")
                        continue
                    if kind not in (rtnl.RTM_NEWROUTE, rtnl.RTM_DELROUTE):
                        continue
                    _, _, rtm_table = rtnl.protocol_and_table(payload)
                    if rtm_table not in (self.table, rtnl.RT_TABLE_COMPAT):
                        continue  # not our table: skip without decoding
                    decoded = rtnl.decode(kind, payload)
                    ev = await self._event(decoded) if decoded else None
                    if ev is not None:
                        yield ev
        finally:
            listener.close()
