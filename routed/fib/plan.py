"""Desired routes vs the kernel's: the difference to apply. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from routed.fib.routes import Route, RouteKey


@dataclass(frozen=True, slots=True)
class RoutePlan:
    add: tuple[Route, ...] = ()
    replace: tuple[Route, ...] = ()
    delete: tuple[Route, ...] = ()
    # Desired routes whose prefix also holds a route of another protocol. We never
    # touch that route; if we have none of our own there, ours is not installed.
    conflicts: tuple[Route, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.add or self.replace or self.delete)

    def __len__(self) -> int:
        return len(self.add) + len(self.replace) + len(self.delete)


def plan_routes(
    desired: Mapping[RouteKey, Route],
    ours: Mapping[RouteKey, Route],
    foreign: Set[RouteKey],
    *,
    only: Set[RouteKey] | None = None,
    allow_delete: bool = True,
    deletable: Set[RouteKey] = frozenset(),
) -> RoutePlan:
    """What to change so that the kernel's routes of our protocol equal `desired`.

    `only` limits the plan to some prefixes (an incremental pass, or a one-shot
    CLI acting on one workload without judging the rest). `allow_delete=False`
    keeps routes we no longer want: at start-up they are stale, not wrong, until
    every source of routes has spoken (graceful restart). Those in `deletable` go even
    then: a source has said, in this run, that it no longer wants them.
    """
    keys = (desired.keys() | ours.keys()) if only is None else only
    add: list[Route] = []
    replace: list[Route] = []
    delete: list[Route] = []
    conflicts: list[Route] = []
    # A full pass goes in address order (readable logs, reproducible batches); an incremental
    # one in the order the changes came, as sorting 100k keys cost more than it gave.
    for key in sorted(keys, key=_sort_key) if only is None else keys:
        want = desired.get(key)
        have = ours.get(key)
        if want is not None:
            if key in foreign:
                conflicts.append(want)
            if have is None:
                if key not in foreign:
                    add.append(want)
            elif have != want:
                replace.append(want)
        elif have is not None and (allow_delete or key in deletable):
            delete.append(have)
    return RoutePlan(tuple(add), tuple(replace), tuple(delete), tuple(conflicts))


def _sort_key(key: RouteKey) -> tuple[int, int, int, int]:
    table, dst = key
    return (table, dst.version, int(dst.network_address), dst.prefixlen)
