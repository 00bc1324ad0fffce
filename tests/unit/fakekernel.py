"""A kernel routing table in memory, with the netlink edge's event semantics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from routed.fib.kernel import EventsLost, KernelView, RouteEvent, RouteFailure
from routed.fib.plan import RoutePlan
from routed.fib.routes import Route, RouteKey


class FakeKernel:
    def __init__(self) -> None:
        self.ours: dict[RouteKey, Route] = {}
        self.foreign: dict[RouteKey, set[tuple[int, int]]] = {}
        self.applied: list[RoutePlan] = []
        self.dumps = 0
        self.fail: set[RouteKey] = set()
        self._events: asyncio.Queue[RouteEvent | EventsLost] = asyncio.Queue()

    # what "someone else" does to the kernel
    def external_delete(self, key: RouteKey) -> None:
        if self.ours.pop(key, None) is not None:
            self._events.put_nowait(RouteEvent(False, key, True, None))

    def external_add_foreign(self, key: RouteKey, proto: int = 4) -> None:
        self.foreign.setdefault(key, set()).add((proto, 0))
        self._events.put_nowait(RouteEvent(True, key, False, None, (proto, 0)))

    def external_delete_foreign(self, key: RouteKey, proto: int = 4) -> None:
        routes = self.foreign.get(key, set())
        routes.discard((proto, 0))
        if not routes:
            self.foreign.pop(key, None)
        self._events.put_nowait(RouteEvent(False, key, False, None, (proto, 0)))

    def lose_events(self) -> None:
        self._events.put_nowait(EventsLost())

    async def dump(self) -> KernelView:
        self.dumps += 1
        return KernelView(dict(self.ours), {k: set(v) for k, v in self.foreign.items() if v})

    async def apply(self, plan: RoutePlan) -> list[RouteFailure]:
        self.applied.append(plan)
        failures = []
        for route in (*plan.add, *plan.replace):
            if route.key in self.fail:
                failures.append(RouteFailure(route, "add", "ENODEV"))
                continue
            if route.key in self.foreign and route.key not in self.ours:
                failures.append(RouteFailure(route, "add", "EEXIST"))
                continue
            self.ours[route.key] = route
            self._events.put_nowait(RouteEvent(True, route.key, True, route))
        for route in plan.delete:
            if self.ours.pop(route.key, None) is not None:
                self._events.put_nowait(RouteEvent(False, route.key, True, None))
        return failures

    async def events(self) -> AsyncIterator[RouteEvent | EventsLost]:
        while True:
            yield await self._events.get()
