"""The FIB as the speaker's route sink (bgp.sink.RouteSink): best paths become kernel routes of
source "bgp", via each of their next hops."""

from __future__ import annotations

from collections.abc import Mapping

from bgp.decision import Selection
from bgp.model import IPNetwork
from routed.fib.reconciler import Reconciler, RouteSource
from routed.fib.routes import RouteKey, gateway_route


class FibSink:
    def __init__(self, reconciler: Reconciler, table: int, interface: str | None = None) -> None:
        """`interface`: the fabric's, where a link-local next hop is."""
        self.reconciler = reconciler
        self.table = table
        self.interface = interface

    def best_paths(self, changes: Mapping[IPNetwork, Selection | None]) -> None:
        upsert = []
        remove: list[RouteKey] = []
        for prefix, selection in changes.items():
            if selection is None:
                remove.append((self.table, prefix))
            else:
                upsert.append(gateway_route(prefix, selection.next_hops, self.table, self.interface))
        self.reconciler.update_routes(RouteSource.BGP, upsert=upsert, remove=remove)

    def bgp_ready(self) -> None:
        self.reconciler.mark_ready(RouteSource.BGP)
