"""Our own routes, and the rule that we announce exactly what is in our kernel.

No peer may route traffic here before we can deliver it (a new workload, a route refused for
a conflict); a workload that goes is withdrawn at once. Each installed IPAM block is one
announcement (an `unreachable` route, so its unused addresses are answered at once instead
of sent on by a shorter route); a workload's /32 is announced only outside them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from bgp.model import IPNetwork
from routed.fib.reconciler import Reconciler, RouteSource
from routed.fib.routes import Route, unreachable_route
from routed.ipam import blocks


class LocalRoutes:
    def __init__(
        self,
        reconciler: Reconciler,
        table: int,
        owned_blocks: Callable[[], Sequence[IPNetwork]],
        announced: Callable[[], set[IPNetwork]],
        announce: Callable[[Iterable[IPNetwork]], None],
    ) -> None:
        self.reconciler = reconciler
        self.table = table
        self.owned_blocks = owned_blocks  # IPAM's, now
        self.announced = announced  # what the speaker announces as ours now
        self.announce = announce
        self.routes: list[Route] = []

    def set_workload_routes(self, routes: list[Route]) -> None:
        """Each workload's /32 to its veth, and each owned block `unreachable`."""
        owned = [unreachable_route(b, self.table) for b in self.owned_blocks()]
        self.routes = [*routes, *owned]
        self.reconciler.set_routes(RouteSource.LOCAL, self.routes)
        self.announce_installed()

    def announce_installed(self) -> None:
        """Called on every change and after every FIB pass."""
        installed = [r for r in self.routes if self.reconciler.is_installed(r)]
        wanted = blocks.announced(
            (r.dst for r in installed if r.unreachable),
            (r.dst for r in installed if not r.unreachable),
            owned=self.owned_blocks(),
        )
        if wanted != self.announced():
            self.announce(wanted)

    def counts(self) -> dict[str, int]:
        """Our kernel routes by origin: workloads, IPAM blocks (unreachable), BGP, leftovers."""
        counts = self.reconciler.installed_by_source()
        block = sum(1 for r in self.routes if r.unreachable and self.reconciler.is_installed(r))
        return {
            "workload": counts[RouteSource.LOCAL] - block,
            "block": block,
            "bgp": counts[RouteSource.BGP],
            "leftover": counts["leftover"],
        }
