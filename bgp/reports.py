"""What the RIB refused and which addresses conflict, told once each and counted.

A flood of refusals must not become a flood of log lines: the first few per peer and reason
are logged, the rest counted (routed status --json, routed_bgp_prefixes_rejected_total).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from bgp.conflicts import HIJACK, HIJACK_REASONS, Conflict, ConflictTracker
from bgp.events import event
from bgp.model import IPAddress, IPNetwork, origin
from bgp.neighbor import Neighbor
from bgp.rib import Changes, Rib, UpdateResult

log = logging.getLogger("bgp.speaker")

LOGGED_REJECTIONS = 5  # per peer and reason; past it, refusals are counted, not logged


class RouteReports:
    def __init__(self, rib: Rib, conflicts: ConflictTracker, counters: Counter[str]) -> None:
        self.rib = rib
        self.conflicts = conflicts
        self.counters = counters

    def merge(self, changes: Changes, result: UpdateResult, neighbors: Mapping[IPAddress, Neighbor]) -> None:
        """Take an RIB result's best-path changes into `changes`; report its refusals and conflicts."""
        changes.update(result.changes)
        for prefix in result.touched:
            self.conflict(self.conflicts.paths(prefix, self.rib.paths(prefix)))
        for rejected in result.rejected:
            reason = rejected.reason.value
            self.counters[f"rejected:{reason}"] += 1
            neighbor = neighbors.get(rejected.peer)
            seen = neighbor.count_rejection(reason) if neighbor is not None else 1
            if self.conflict(self.conflicts.rejected(rejected)) or rejected.reason in HIJACK_REASONS:
                continue
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

    def conflict(self, conflict: Conflict | None) -> bool:
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

    def conflicts_json(self, peers: list[IPAddress]) -> dict[str, Any]:
        def announced_by(prefix: IPNetwork, node: str) -> bool:
            return any(
                (path := self.rib.announces(address, prefix)) is not None and str(origin(path)) == node
                for address in peers
            )

        self.conflicts.prune_hijacks(announced_by)
        return self.conflicts.json()
