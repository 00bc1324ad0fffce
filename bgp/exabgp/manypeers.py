"""ExaBGP changes for a speaker with many neighbours (a route reflector of hundreds of hosts),
applied by bgp.exabgp.launch. Each is meant for upstream (docs/upstream/exabgp/).

`indexed_neighbor_match` (0006): an API command naming its neighbours ("neighbor A , neighbor
B announce ...", how routed sends one change to every client but its origin) was matched by
trying every selector against every configured neighbour with a fresh regular expression:
O(selectors x neighbours) regex searches, a quarter of a million for one change on a
reflector of 500 clients. A profile of a 200-client reflector (py-spy) had 94 % of ExaBGP's
samples there, and its sessions took 109 s to come up. The neighbours' names are now indexed
by their "key value" pairs once (until the set of neighbours changes) and each selector is
a set lookup; what matches is unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

Matcher = Callable[[Sequence[str], Sequence[Sequence[str]]], Sequence[str]]


def pair_index(names: Sequence[str]) -> dict[str, set[str]]:
    """{"neighbor 10.0.0.1": {names}, "local-as 64512": {...}, ...}: every two adjacent words of
    every name, which is what `(^|\\s)<key value>($|\\s|,)` can match in it."""
    index: dict[str, set[str]] = {}
    for name in names:
        words = name.split(" ")
        for pair in {f"{a} {b}" for a, b in itertools.pairwise(words)}:
            index.setdefault(pair, set()).add(name)
    return index


def indexed_matcher(original_match: Callable[[Sequence[str], str], bool]) -> Matcher:
    """match_neighbors(peers, descriptions) with ExaBGP's semantics (limit.match_neighbor: the
    strings of a description must all match, up to a `neighbor *`, which matches any), through
    a pair index. A string that is not one `key value` pair takes the original matcher."""
    cached: list[Any] = [None, None]

    def match_neighbors(peers: Sequence[str], descriptions: Sequence[Sequence[str]]) -> Sequence[str]:
        if not descriptions:
            return peers
        key = tuple(peers)
        if cached[0] != key:
            cached[0], cached[1] = key, pair_index(key)
        index: dict[str, set[str]] = cached[1]
        matched: set[str] = set()
        for description in descriptions:
            candidates: set[str] | None = None
            for string in description:
                if string.strip() == "neighbor *":
                    break
                if string.count(" ") != 1 or any(c.isspace() and c != " " for c in string):
                    hits = {
                        p
                        for p in (candidates if candidates is not None else key)
                        if original_match([string], p)
                    }
                else:
                    hits = index.get(string, set())
                candidates = hits if candidates is None else candidates & hits
                if not candidates:
                    break
            matched |= set(key) if candidates is None else candidates
        return [peer for peer in dict.fromkeys(peers) if peer in matched]

    return match_neighbors


def indexed_neighbor_match() -> None:
    from exabgp.reactor.api.command import announce, limit, rib  # type: ignore[import-untyped]

    matcher = indexed_matcher(limit.match_neighbor)
    for module in (limit, announce, rib):
        module.match_neighbors = matcher
