"""Where the speaker's best-path changes go: a consumer the node provides (its FIB), as GoBGP's
watchers and BIRD's kernel protocol consume the table. `bgp` knows only this Protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from bgp.decision import Selection
from bgp.model import IPNetwork


class RouteSink(Protocol):
    def best_paths(self, changes: Mapping[IPNetwork, Selection | None]) -> None:
        """Prefixes whose best paths changed: the new selection, or None once it has none."""

    def bgp_ready(self) -> None:
        """Every peer's End-of-RIB is in (or its wait is over): what is missing now is gone."""
