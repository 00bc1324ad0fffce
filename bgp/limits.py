"""Max-prefix (RFC 4271 §6's "implementation-specific" limit, as BIRD's `receive limit` and
FRR's `maximum-prefix`): what of a peer's UPDATE may be kept, and whether the limit is crossed. Pure.

The count is of prefixes the peer holds announced to us, refused by policy or not: a flood of
junk costs memory whether or not it is installed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bgp.model import Attributes, IPNetwork


class MaxPrefixAction(StrEnum):
    WARN = "warn"  # log and count, keep everything
    DROP = "drop"  # keep the first `limit` prefixes, ignore the rest
    TEARDOWN = "teardown"  # close the session (Cease 1), drop its routes, hold it down


class MaxPrefixes(Protocol):
    """A receive limit as the node's config gives it (routed.config.schema.MaxPrefixes)."""

    @property
    def limit(self) -> int: ...

    @property
    def action(self) -> MaxPrefixAction: ...


Announcement = tuple[IPNetwork, Attributes]


@dataclass(frozen=True, slots=True)
class Admission:
    kept: tuple[Announcement, ...]
    dropped: int  # announcements ignored (drop)
    held: int  # prefixes the peer would hold with everything it sent
    exceeded: bool  # over the limit now (warn, drop) or it must go (teardown)


def admit(
    limit: MaxPrefixes | None,
    held: Collection[IPNetwork],
    announced: Sequence[Announcement],
    held_by_family: Mapping[int, int] | None = None,
) -> Admission:
    """Which announcements to keep, given the prefixes the peer already holds with us. The limit
    applies to each address family apart (`held_by_family`: how many of `held` are IPv4 and
    IPv6; without it, all of `held` counts as one family), as BIRD's receive limit is per
    channel: a session carrying both (RFC 8950) may hold the limit of each."""
    counts = dict(held_by_family) if held_by_family is not None else None
    new: dict[int, set[IPNetwork]] = {}
    for prefix, _ in announced:
        if prefix not in held:
            new.setdefault(prefix.version if counts is not None else 0, set()).add(prefix)
    if counts is None:
        counts = {0: len(held)}
    totals = {family: counts.get(family, 0) + len(prefixes) for family, prefixes in new.items()}
    total = max(totals.values(), default=max(counts.values(), default=0))
    if limit is None or total <= limit.limit:
        return Admission(tuple(announced), 0, total, False)
    if limit.action is MaxPrefixAction.WARN:
        return Admission(tuple(announced), 0, total, True)
    if limit.action is MaxPrefixAction.TEARDOWN:
        return Admission((), 0, total, True)
    per_family = held_by_family is not None
    room = {family: max(0, limit.limit - held) for family, held in counts.items()}
    admitted: list[Announcement] = []
    seen: set[IPNetwork] = set()
    for item in announced:
        prefix = item[0]
        family = prefix.version if per_family else 0
        if prefix in held or prefix in seen:
            admitted.append(item)  # an update of what it already holds is always taken
        elif room.setdefault(family, limit.limit) > 0:
            seen.add(prefix)
            room[family] -= 1
            admitted.append(item)
    return Admission(tuple(admitted), len(announced) - len(admitted), total, True)
