"""The kernel's routing table behind a small interface, and its netlink implementation.

The reconciler only sees `Kernel`; unit tests give it a fake, the daemon gives it
`NetlinkKernel`. Every request carries ROUTE_PROTOCOL, and deletions name it, so
the kernel itself refuses to delete a route of another protocol.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE

from routed.dataplane.netns import async_iproute
from routed.fib.plan import RoutePlan
from routed.fib.routes import ROUTE_PROTOCOL, NextHop, Route, RouteKey
from routed.log import event

log = logging.getLogger("routed.fib")

SCOPE_UNIVERSE = 0
SCOPE_LINK = 253
SCOPE_NOWHERE = 255


@dataclass(slots=True)
class KernelView:
    """What the kernel holds in our table: our routes, and how many foreign routes per prefix."""

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
    """The event socket overflowed: the view may be stale, a full resync is due."""


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
    """`Kernel` over pyroute2: one request socket and one event socket, kept open."""

    def __init__(self, table: int, netns: str | None = None) -> None:
        self.table = table
        self._netns = netns
        self._ipr: Any = None
        self._names: dict[int, str] = {}
        self._indexes: dict[str, int] = {}

    async def _requests(self) -> Any:
        if self._ipr is None:
            self._ipr = async_iproute(self._netns)
        return self._ipr

    async def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def _refresh_links(self) -> None:
        ipr = await self._requests()
        names: dict[int, str] = {}
        async for link in await ipr.link("dump"):
            names[link["index"]] = link.get("ifname")
        self._names = names
        self._indexes = {name: index for index, name in names.items()}

    async def _device_name(self, index: int) -> str:
        if index not in self._names:
            await self._refresh_links()
        return self._names.get(index, f"if{index}")

    async def _parse(self, msg: Any) -> RouteEvent | None:
        """The route of a message in our table as an event; None for anything else."""
        table = msg.get("table") or msg["table"]
        if table != self.table or msg["family"] not in (socket.AF_INET, socket.AF_INET6):
            return None
        dst_text = msg.get("dst") or ("0.0.0.0" if msg["family"] == socket.AF_INET else "::")
        key: RouteKey = (table, ipaddress.ip_network(f"{dst_text}/{msg['dst_len']}"))
        added = msg.get("event") != "RTM_DELROUTE"
        if msg["proto"] != ROUTE_PROTOCOL:
            return RouteEvent(added, key, False, None, (msg["proto"], msg.get("priority") or 0))
        hops: list[NextHop] = []
        multipath = msg.get("multipath")
        if multipath:
            for hop in multipath:
                gateway = hop.get("gateway")
                hops.append(
                    NextHop(gateway=ipaddress.ip_address(gateway))
                    if gateway
                    else NextHop(device=await self._device_name(hop["oif"]))
                )
        elif msg.get("gateway"):
            hops.append(NextHop(gateway=ipaddress.ip_address(msg.get("gateway"))))
        elif msg.get("oif"):
            hops.append(NextHop(device=await self._device_name(msg.get("oif"))))
        route = Route(dst=key[1], nexthops=tuple(hops), table=table) if hops else None
        return RouteEvent(added, key, True, route if added else None)

    async def dump(self) -> KernelView:
        ipr = await self._requests()
        await self._refresh_links()
        view = KernelView()
        for family in (socket.AF_INET, socket.AF_INET6):
            async for msg in await ipr.route("dump", family=family, table=self.table):
                parsed = await self._parse(msg)
                if parsed is not None:
                    view.apply_event(parsed)
        return view

    def _request(self, route: Route) -> dict[str, Any]:
        request: dict[str, Any] = {
            "dst": str(route.dst),
            "table": route.table,
            "proto": ROUTE_PROTOCOL,
            "family": socket.AF_INET if route.dst.version == 4 else socket.AF_INET6,
        }
        if route.is_link_scope:
            device = route.nexthops[0].device
            assert device is not None
            index = self._indexes.get(device)
            if index is None:
                raise LookupError(f"device {device} does not exist")
            request.update(oif=index, scope=SCOPE_LINK)
        elif len(route.nexthops) == 1:
            request.update(gateway=str(route.nexthops[0].gateway), scope=SCOPE_UNIVERSE)
        else:
            request.update(
                multipath=[{"gateway": str(h.gateway)} for h in route.nexthops],
                scope=SCOPE_UNIVERSE,
            )
        return request

    async def apply(self, plan: RoutePlan) -> list[RouteFailure]:
        ipr = await self._requests()
        if any(r.is_link_scope for r in (*plan.add, *plan.replace)):
            await self._refresh_links()
        failures: list[RouteFailure] = []
        steps = [("add", r) for r in plan.add] + [("replace", r) for r in plan.replace]
        for action, route in steps:
            try:
                await ipr.route(action, **self._request(route))
            except (NetlinkError, LookupError) as exc:
                failures.append(RouteFailure(route, action, _reason(exc)))
        for route in plan.delete:
            try:
                # Naming the protocol makes the kernel match only our route.
                await ipr.route(
                    "del",
                    dst=str(route.dst),
                    table=route.table,
                    proto=ROUTE_PROTOCOL,
                    scope=SCOPE_NOWHERE,  # as `ip route del` does: match any scope
                    family=socket.AF_INET if route.dst.version == 4 else socket.AF_INET6,
                )
            except NetlinkError as exc:
                if exc.code != errno.ESRCH:
                    failures.append(RouteFailure(route, "delete", _reason(exc)))
        return failures

    async def events(self) -> AsyncIterator[RouteEvent | EventsLost]:
        groups = RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
        listener = async_iproute(self._netns, groups=groups)
        try:
            await listener.bind(groups=groups)
            # Changes made before the subscription took effect are not in any event:
            # tell the reconciler to read the kernel afresh now that nothing can slip by.
            yield EventsLost()
            while True:
                try:
                    async for msg in listener.get():
                        if msg.get("event") not in ("RTM_NEWROUTE", "RTM_DELROUTE"):
                            continue
                        parsed = await self._parse(msg)
                        if parsed is not None:
                            yield parsed
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    log.warning(event("netlink_events_lost", reason="receive buffer overflow"))
                    yield EventsLost()
        finally:
            listener.close()


def _reason(exc: Exception) -> str:
    if isinstance(exc, NetlinkError):
        return f"{errno.errorcode.get(exc.code, exc.code)}: {exc.args[-1] if exc.args else ''}".strip()
    return str(exc)
