"""Keeps the kernel's routes of our protocol equal to the desired set.

Sources (local workloads, BGP) each own a set of routes; the first source in
precedence order that has a prefix decides it, so a local workload route always
beats a learned one. The reconciler keeps a view of the kernel fed by netlink
events, plans only the prefixes that changed, and re-reads the kernel in full
every `resync_interval` seconds and whenever events were lost.

Until every source is ready, routes of ours that nobody wants yet are kept, not
deleted: after a restart they are stale routes still forwarding traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from routed.fib.kernel import EventsLost, Kernel, KernelView, RouteFailure
from routed.fib.plan import RoutePlan, plan_routes
from routed.fib.routes import Route, RouteKey
from routed.log import event

log = logging.getLogger("routed.fib")


class RouteSource(StrEnum):
    """Who wants a route, in precedence order: a local workload's route beats any learned one."""

    LOCAL = "local"  # workloads and our blocks
    BGP = "bgp"  # best paths learned from peers


RETRY_FIRST = 1.0  # seconds before a failed route is tried again; doubles up to the resync interval


@dataclass(slots=True)
class ReconcilerStats:
    passes: int = 0
    full_resyncs: int = 0
    added: int = 0
    replaced: int = 0
    deleted: int = 0
    failures: int = 0
    restored: int = 0  # our routes someone else removed and we put back


class Reconciler:
    def __init__(
        self,
        kernel: Kernel,
        *,
        sources: Sequence[str],
        resync_interval: float = 60.0,
        on_pass: Callable[[], None] | None = None,
        on_applied: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock`: monotonic seconds, for the resync and retry timers (a test's fake one)."""
        self._kernel = kernel
        self._clock = clock
        self._on_pass = on_pass  # told after each pass, e.g. to announce what is now installed
        self._on_applied = on_applied  # told how long each kernel write took (a metrics histogram)
        self._order = tuple(sources)
        self._routes: dict[str, dict[RouteKey, Route]] = {name: {} for name in sources}
        self._ready: set[str] = set()
        self.resync_interval = resync_interval
        self._view = KernelView()
        self._dirty: set[RouteKey] = set()
        # keys some source has spoken of in this run, while not every source is ready: their
        # kernel routes are this run's knowledge, so a withdrawal may delete them at once
        self._spoken: set[RouteKey] = set()
        self._full_due = True
        self._wake = asyncio.Event()
        self._conflicts_logged: set[RouteKey] = set()
        self._in_sync = asyncio.Event()
        self._next_resync = 0.0
        self._retry_delay = RETRY_FIRST
        self.stats = ReconcilerStats()
        # routes the kernel refuses now, by key: (action, reason, attempts). Logged once per
        # route and reason (a refused route is retried every few seconds, for good), counted
        self.failing: dict[RouteKey, tuple[str, str, int]] = {}

    # --- what we want -------------------------------------------------------

    def set_routes(self, source: str, routes: Iterable[Route]) -> None:
        """Replace everything `source` wants with `routes`."""
        new = {r.key: r for r in routes}
        old = self._routes[source]
        changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        self._routes[source] = new
        self._spoke(changed)

    def update_routes(
        self, source: str, upsert: Iterable[Route] = (), remove: Iterable[RouteKey] = ()
    ) -> None:
        table = self._routes[source]
        changed: set[RouteKey] = set()
        for key in remove:
            if table.pop(key, None) is not None:
                changed.add(key)
        for route in upsert:
            if table.get(route.key) != route:
                table[route.key] = route
                changed.add(route.key)
        self._spoke(changed)

    def mark_ready(self, source: str) -> None:
        """`source` has said all it will say at start-up; its absent routes may now go."""
        if source not in self._ready:
            self._ready.add(source)
            if self._all_ready:
                self._spoken.clear()
                self._full_due = True
                self._wake.set()

    @property
    def _all_ready(self) -> bool:
        return self._ready >= set(self._order)

    def desired(self) -> dict[RouteKey, Route]:
        merged: dict[RouteKey, Route] = {}
        for source in reversed(self._order):
            merged.update(self._routes[source])
        return merged

    def is_installed(self, route: Route) -> bool:
        """Whether the kernel holds exactly this route of ours (per the event-fed view)."""
        return self._view.ours.get(route.key) == route

    def installed(self) -> dict[RouteKey, Route]:
        """Our routes as the kernel holds them (per the event-fed view)."""
        return dict(self._view.ours)

    def installed_by_source(self) -> Counter[str]:
        """How many of our kernel routes each source accounts for ("leftover": wanted by none,
        e.g. a previous run's routes not yet swept)."""
        counts: Counter[str] = Counter()
        for key in self._view.ours:
            counts[next((s for s in self._order if key in self._routes[s]), "leftover")] += 1
        return counts

    @property
    def synced(self) -> bool:
        """Every source has said all it will, and the kernel holds exactly what they want."""
        return self._all_ready and self._in_sync.is_set() and not self._dirty

    def _desired_for(self, key: RouteKey) -> Route | None:
        for source in self._order:
            route = self._routes[source].get(key)
            if route is not None:
                return route
        return None

    def _spoke(self, keys: set[RouteKey]) -> None:
        if not self._all_ready:
            self._spoken |= keys
        self._mark(keys)

    def _mark(self, keys: set[RouteKey]) -> None:
        if keys:
            self._dirty |= keys
            self._in_sync.clear()
            self._wake.set()

    async def wait_in_sync(self) -> None:
        """Returns once every change made so far has been applied (or has failed)."""
        await self._in_sync.wait()

    # --- the loop -------------------------------------------------------------

    async def run(self) -> None:
        events = asyncio.create_task(self._follow_events(), name="fib-events")
        try:
            while True:
                now = self._clock()
                if now >= self._next_resync:
                    self._full_due = True
                    self._next_resync = now + self.resync_interval
                if self._full_due or self._dirty:
                    await self._pass()
                    if self._on_pass is not None:
                        self._on_pass()
                if events.done():
                    events.result()  # re-raise: without events we would silently drift
                self._wake.clear()
                if not (self._full_due or self._dirty):
                    self._in_sync.set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), max(0.0, self._next_resync - self._clock()))
        finally:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events

    async def _follow_events(self) -> None:
        async for ev in self._kernel.events():
            if isinstance(ev, EventsLost):
                self._full_due = True
                self._wake.set()
                continue
            wanted = self._desired_for(ev.key)
            if ev.ours and ev.added and wanted is not None and ev.route == wanted:
                # already what we want: an echo of our own change (NetlinkKernel has the kernel
                # drop those, other Kernels need not) or someone else writing the same route.
                # Keep the one object we hold, not a copy, and plan nothing.
                self._view.ours[ev.key] = wanted
                continue
            self._view.apply_event(ev)
            if ev.ours and not ev.added and wanted is not None:
                self.stats.restored += 1
                log.warning(
                    event("route_removed_externally", prefix=ev.key[1], table=ev.key[0], action="restoring")
                )
            if ev.ours or wanted is not None:
                self._mark({ev.key})

    async def _pass(self) -> None:
        full = self._full_due
        self._full_due = False
        if full:
            self._view = await self._kernel.dump()
            self._dirty.clear()
            only = None
            self.stats.full_resyncs += 1
        else:
            only, self._dirty = self._dirty, set()
        plan = plan_routes(
            self.desired() if only is None else {k: r for k in only if (r := self._desired_for(k))},
            self._view.ours,
            self._view.foreign_keys(),
            only=only,
            allow_delete=self._all_ready,
            deletable=self._spoken,
        )
        self._log_conflicts(plan, full)
        if plan.is_empty:
            return
        started = self._clock()
        failures = await self._kernel.apply(plan)
        failed = {f.route.key for f in failures}
        for route in (*plan.add, *plan.replace):
            if route.key not in failed:
                self._view.ours[route.key] = route
        for route in plan.delete:
            if route.key not in failed:
                self._view.ours.pop(route.key, None)
        if self._on_applied is not None:
            self._on_applied(self._clock() - started)
        self.stats.passes += 1
        self.stats.added += len(plan.add)
        self.stats.replaced += len(plan.replace)
        self.stats.deleted += len(plan.delete)
        self.stats.failures += len(failures)
        if not full and any(f.reason.startswith("EEXIST") for f in failures):
            self._full_due = True  # a route of another protocol appeared in between: re-read
        retry_in = self._retry_delay
        if failures:
            # e.g. a next hop unreachable while a link comes back: retry soon, backing off
            self._next_resync = min(self._next_resync, self._clock() + retry_in)
            self._retry_delay = min(retry_in * 2, self.resync_interval)
        else:
            self._retry_delay = RETRY_FIRST
        self._note_failures(plan, failures, retry_in, full)
        log.info(
            event(
                "fib_applied",
                full=full,
                added=len(plan.add),
                replaced=len(plan.replace),
                deleted=len(plan.delete),
                failed=len(failures),
                ms=round((self._clock() - started) * 1000, 1),
            )
        )

    def _note_failures(
        self, plan: RoutePlan, failures: Sequence[RouteFailure], retry_in: float, full: bool
    ) -> None:
        """Log a refused route the first time for each reason, count every attempt, and say once
        when it finally goes in."""
        failed = {f.route.key: f for f in failures}
        for route in (*plan.add, *plan.replace, *plan.delete):
            if route.key not in failed and (before := self.failing.pop(route.key, None)) is not None:
                log.info(event("route_failure_over", route=route, reason=before[1], attempts=before[2]))
        for key, failure in failed.items():
            action, reason, attempts = self.failing.get(key, ("", "", 0))
            if (action, reason) != (failure.action, failure.reason):
                attempts = 0
                log.error(
                    event(
                        "route_failed",
                        action=failure.action,
                        route=failure.route,
                        reason=failure.reason,
                        retry=f"in {retry_in:g}s and on, logged again only if the reason changes",
                    )
                )
            self.failing[key] = (failure.action, failure.reason, attempts + 1)
        if full and self.failing:  # a route no longer wanted (nor ours to delete) is no longer failing
            wanted = self.desired()
            for key in [k for k in self.failing if k not in wanted and k not in self._view.ours]:
                del self.failing[key]

    def failing_by_reason(self) -> dict[str, int]:
        """How many routes the kernel refuses now, by its reason."""
        counts: Counter[str] = Counter(reason for _, reason, _ in self.failing.values())
        return dict(counts)

    def _log_conflicts(self, plan: RoutePlan, full: bool) -> None:
        current = {r.key for r in plan.conflicts}
        for route in plan.conflicts:
            if route.key not in self._conflicts_logged:
                _log_conflict(route)
        self._conflicts_logged |= current
        if full:
            self._conflicts_logged &= current


def _log_conflict(route: Route) -> None:
    log.warning(
        event(
            "route_conflict",
            prefix=route.dst,
            table=route.table,
            wanted=route,
            action="left the other protocol's route alone",
        )
    )


async def apply_once(kernel: Kernel, desired: Iterable[Route], only: set[RouteKey]) -> RoutePlan:
    """Bring just the `only` prefixes in line, once: for the CLI when no daemon runs.

    Anything outside `only` (learned routes kept for graceful restart, other
    workloads) is not judged, so it cannot be deleted by a one-shot command.
    """
    view = await kernel.dump()
    plan = plan_routes(
        {r.key: r for r in desired if r.key in only}, view.ours, view.foreign_keys(), only=only
    )
    for route in plan.conflicts:
        _log_conflict(route)
    failures = await kernel.apply(plan)
    for failure in failures:
        log.error(event("route_failed", action=failure.action, route=failure.route, reason=failure.reason))
    return plan
