"""The BGP decision process (RFC 4271 9.1.2.2, with RFC 4456's CLUSTER_LIST rule).

Before every RFC 4271 rule comes freshness: a path kept as stale through its peer's
restart (RFC 4724) or as long-lived stale loses to any fresh path, whatever its
attributes, so a live session always carries the traffic.

Each rule narrows the candidate set; the rule that leaves one path is the reason it won.
Multipath: the paths still tied after the rules that ECMP must respect (local pref,
AS path length, origin, MED, eBGP/iBGP) share the traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address

from bgp.model import GRACEFUL_SHUTDOWN, IPAddress, Path, slot_setter

DEFAULT_LOCAL_PREF = 100


class Reason(StrEnum):
    ONLY_PATH = "only path"
    FRESHNESS = "fresh over stale"
    LOCAL_PREF = "local preference"
    AS_PATH = "AS path length"
    ORIGIN = "origin"
    MED = "MED"
    EBGP = "eBGP over iBGP"
    CLUSTER_LIST = "cluster list length"
    ROUTER_ID = "router id"
    PEER_ADDRESS = "peer address"


@dataclass(frozen=True, slots=True)
class Selection:
    best: Path
    multipath: tuple[Path, ...]  # best first; at most max_paths, distinct next hops
    reason: Reason

    @property
    def next_hops(self) -> tuple[IPAddress, ...]:
        return tuple(p.attrs.next_hop for p in self.multipath)


# The frozen dataclass's __init__ (object.__setattr__ per field) was most of a single-path
# selection's cost, made once per learned route: the slots are set directly instead.
# tests/unit/test_fast_builders.py checks the result equals Selection(...).
_new = object.__new__
_set_best, _set_multipath = slot_setter(Selection, "best"), slot_setter(Selection, "multipath")
_set_reason = slot_setter(Selection, "reason")


def _only_path(path: Path, paths: tuple[Path, ...]) -> Selection:
    selection: Selection = _new(Selection)
    _set_best(selection, path)
    _set_multipath(selection, paths)
    _set_reason(selection, Reason.ONLY_PATH)
    return selection


def _local_pref(path: Path) -> int:
    if GRACEFUL_SHUTDOWN in path.attrs.communities:
        return 0
    pref = path.attrs.local_pref
    return DEFAULT_LOCAL_PREF if pref is None or path.peer.ebgp else pref


def _keep_min(paths: list[Path], key: Callable[[Path], object]) -> list[Path]:
    values = [key(p) for p in paths]
    lowest = min(values)  # type: ignore[type-var]
    return [p for p, v in zip(paths, values, strict=True) if v == lowest]


def by_freshness(paths: list[Path]) -> list[Path]:
    """A path kept through a peer's restart loses to any path a live session vouches for."""
    return _keep_min(paths, lambda p: int(p.stale))


def by_local_pref(paths: list[Path]) -> list[Path]:
    return _keep_min(paths, lambda p: -_local_pref(p))


def by_as_path(paths: list[Path]) -> list[Path]:
    return _keep_min(paths, lambda p: p.attrs.as_path_length)


def by_origin(paths: list[Path]) -> list[Path]:
    return _keep_min(paths, lambda p: int(p.attrs.origin))


def by_med(paths: list[Path]) -> list[Path]:
    """Drop a path if another from the same neighbour AS has a lower MED (missing MED = 0)."""

    def neighbour(p: Path) -> int:
        return p.attrs.neighbour_as if p.attrs.neighbour_as is not None else p.peer.local_asn

    lowest: dict[int, int] = {}
    for p in paths:
        med = p.attrs.med or 0
        lowest[neighbour(p)] = min(med, lowest.get(neighbour(p), med))
    return [p for p in paths if (p.attrs.med or 0) == lowest[neighbour(p)]]


def by_ebgp(paths: list[Path]) -> list[Path]:
    return _keep_min(paths, lambda p: 0 if p.peer.ebgp else 1)


def by_cluster_list(paths: list[Path]) -> list[Path]:
    return _keep_min(paths, lambda p: len(p.attrs.cluster_list))


def _router_id(path: Path) -> int:
    rid = path.attrs.originator_id or path.peer.router_id or IPv4Address("255.255.255.255")
    return int(rid)


def by_router_id(paths: list[Path]) -> list[Path]:
    return _keep_min(paths, _router_id)


def by_peer_address(paths: list[Path]) -> list[Path]:
    return _keep_min(paths, lambda p: (p.peer.address.version, int(p.peer.address)))


MULTIPATH_RULES: tuple[tuple[Reason, Callable[[list[Path]], list[Path]]], ...] = (
    (Reason.FRESHNESS, by_freshness),
    (Reason.LOCAL_PREF, by_local_pref),
    (Reason.AS_PATH, by_as_path),
    (Reason.ORIGIN, by_origin),
    (Reason.MED, by_med),
    (Reason.EBGP, by_ebgp),
)
TIE_BREAKERS: tuple[tuple[Reason, Callable[[list[Path]], list[Path]]], ...] = (
    (Reason.CLUSTER_LIST, by_cluster_list),
    (Reason.ROUTER_ID, by_router_id),
    (Reason.PEER_ADDRESS, by_peer_address),
)


def _narrow(
    candidates: list[Path],
    rules: tuple[tuple[Reason, Callable[[list[Path]], list[Path]]], ...],
    reason: Reason,
) -> tuple[list[Path], Reason]:
    """Apply rules in order until one path is left; the last rule that removed a path is the reason."""
    for rule_reason, rule in rules:
        if len(candidates) == 1:
            break
        narrowed = rule(candidates)
        if len(narrowed) < len(candidates):
            reason = rule_reason
        candidates = narrowed
    return candidates, reason


def select(paths: Sequence[Path], max_paths: int = 1) -> Selection | None:
    """The best path among `paths` (all for one prefix), why it won, and its ECMP set."""
    if not paths:
        return None
    if len(paths) == 1:  # the common case by far: one path per prefix
        # tuple() of the RIB's own 1-tuple is that same tuple: no copy per prefix
        return _only_path(paths[0], tuple(paths))
    equal_cost, reason = _narrow(list(paths), MULTIPATH_RULES, Reason.ONLY_PATH)
    candidates, reason = _narrow(equal_cost, TIE_BREAKERS, reason)
    best = candidates[0]
    multipath = [best]
    seen = {best.attrs.next_hop}
    for path in sorted(equal_cost, key=lambda p: (_router_id(p), int(p.peer.address))):
        if len(multipath) >= max_paths:
            break
        if path.attrs.next_hop not in seen:
            seen.add(path.attrs.next_hop)
            multipath.append(path)
    return Selection(best, tuple(multipath), reason)
