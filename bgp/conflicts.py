"""Address conflicts seen on the fabric: never silent. No I/O; the speaker logs what this finds.

Two kinds, each reported once (until it goes away and comes back):
- another node announces one of our workload addresses, or a prefix inside one of our
  blocks: a hijack attempt. Ours is kept (the import policy refused theirs).
- two nodes announce the same prefix inside the pools (a reflector sees both): the same
  block or address given out twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bgp.model import IPAddress, IPNetwork, Path, origin
from bgp.policy import Rejection
from bgp.rib import Rejected

HIJACK_REASONS = {Rejection.LOCAL_WORKLOAD, Rejection.OWN_BLOCK}
HIJACK = "ours announced by another node"
TWICE = "announced by two nodes"


@dataclass(frozen=True, slots=True)
class Conflict:
    prefix: IPNetwork
    nodes: tuple[str, ...]  # "this node" and/or the others' addresses, sorted
    kind: str  # HIJACK or TWICE
    since: float

    def json(self) -> dict[str, object]:
        return {"prefix": str(self.prefix), "nodes": list(self.nodes), "kind": self.kind, "since": self.since}


class ConflictTracker:
    def __init__(self, me: str, pools: Iterable[IPNetwork], own: Iterable[IPAddress] = ()) -> None:
        """`own`: this node's router id and fabric addresses, as an origin."""
        self.me = me
        self.pools = tuple(pools)
        self.own = frozenset(own)
        self.current: dict[tuple[IPNetwork, str], Conflict] = {}
        self.total = 0

    def rejected(self, rejected: Rejected) -> Conflict | None:
        """A route refused for being ours: a new conflict, or None if already known or not one."""
        if rejected.reason not in HIJACK_REASONS or rejected.origin is None:
            return None
        if rejected.origin in self.own:
            return None  # our own route back through reflectors of another cluster: refused, no conflict
        return self._add(rejected.prefix, HIJACK, (f"{self.me} (this node)", str(rejected.origin)))

    def paths(self, prefix: IPNetwork, paths: Sequence[Path]) -> Conflict | None:
        """The accepted paths of a prefix changed: two origins inside the pools is a conflict.
        (Called for every changed prefix of a 100k-route table: the common cases go first.)"""
        origins = {origin(p) for p in paths} if len(paths) > 1 else ()
        if len(origins) < 2 or not self._in_pools(prefix):
            if self.current:
                self.current.pop((prefix, TWICE), None)
            return None
        return self._add(prefix, TWICE, tuple(sorted(str(o) for o in origins)))

    def prune_hijacks(self, still_announced: Callable[[IPNetwork, str], bool]) -> None:
        """Forget hijacks whose route is gone, so that a new one is reported again."""
        for (prefix, kind), conflict in list(self.current.items()):
            if kind == HIJACK and not still_announced(prefix, conflict.nodes[1]):
                del self.current[(prefix, kind)]

    def _in_pools(self, prefix: IPNetwork) -> bool:
        return any(prefix.version == p.version and prefix.subnet_of(p) for p in self.pools)  # type: ignore[arg-type]

    def _add(self, prefix: IPNetwork, kind: str, nodes: tuple[str, ...]) -> Conflict | None:
        known = self.current.get((prefix, kind))
        if known is not None and known.nodes == nodes:
            return None
        conflict = Conflict(prefix, nodes, kind, round(time.time(), 3))
        self.current[(prefix, kind)] = conflict
        self.total += 1
        return conflict

    def json(self) -> dict[str, object]:
        return {
            "current": len(self.current),
            "seen": self.total,
            "list": [c.json() for c in sorted(self.current.values(), key=lambda c: str(c.prefix))],
        }
