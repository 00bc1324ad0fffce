"""Text commands for ExaBGP's process API. Pure.

Many prefixes with the same attributes go in one command, which ExaBGP sends as
one UPDATE: the measured difference between 15 s and under 7 s for 20k prefixes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from bgp.model import IPAddress, IPNetwork, Origin

NLRI_PER_COMMAND = 400


@dataclass(frozen=True, slots=True)
class Export:
    """Attributes we attach to routes we send. next_hop None means `self`."""

    next_hop: IPAddress | None = None
    origin: Origin = Origin.IGP
    as_path: tuple[int, ...] = ()
    med: int | None = None
    local_pref: int | None = None
    communities: tuple[tuple[int, int], ...] = ()
    originator_id: IPv4Address | None = None
    cluster_list: tuple[IPv4Address, ...] = ()

    def text(self) -> str:
        parts = [
            f"next-hop {self.next_hop if self.next_hop is not None else 'self'}",
            f"origin {self.origin.name.lower()}",
        ]
        if self.as_path:
            parts.append(f"as-path [ {' '.join(map(str, self.as_path))} ]")
        if self.med is not None:
            parts.append(f"med {self.med}")
        if self.local_pref is not None:
            parts.append(f"local-preference {self.local_pref}")
        if self.communities:
            parts.append(f"community [ {' '.join(f'{a}:{b}' for a, b in self.communities)} ]")
        if self.originator_id is not None:
            parts.append(f"originator-id {self.originator_id}")
        if self.cluster_list:
            parts.append(f"cluster-list [ {' '.join(map(str, self.cluster_list))} ]")
        return " ".join(parts)


def _chunks(prefixes: Sequence[IPNetwork]) -> Iterable[Sequence[IPNetwork]]:
    for start in range(0, len(prefixes), NLRI_PER_COMMAND):
        yield prefixes[start : start + NLRI_PER_COMMAND]


def _selector(peers: Sequence[IPAddress]) -> str:
    # ExaBGP applies one command to several neighbours: "neighbor A , neighbor B announce ..."
    return " , ".join(f"neighbor {peer}" for peer in peers)


def announce(peers: Sequence[IPAddress], prefixes: Iterable[IPNetwork], export: Export) -> list[str]:
    """Commands announcing `prefixes` with `export` to every peer in `peers` (one command, not one each)."""
    ordered = sorted(prefixes, key=lambda p: (p.version, int(p.network_address), p.prefixlen))
    attrs = export.text()
    return [
        f"{_selector(peers)} announce attributes {attrs} nlri {' '.join(map(str, chunk))}"
        for chunk in _chunks(ordered)
    ]


# A withdrawal carries no next hop on the wire, but ExaBGP's command needs one. `self` made
# ExaBGP deep-copy the change for every neighbour to resolve it (Neighbor.remove_self); an
# unspecified address of the prefixes' family is shared as it is.
_WITHDRAW_NEXT_HOP = {4: "0.0.0.0", 6: "::"}


def withdraw(peers: Sequence[IPAddress], prefixes: Iterable[IPNetwork]) -> list[str]:
    listed = list(prefixes)
    lines = []
    for version in (4, 6):
        ordered = sorted(
            (p for p in listed if p.version == version), key=lambda p: (int(p.network_address), p.prefixlen)
        )
        lines += [
            f"{_selector(peers)} withdraw attributes next-hop {_WITHDRAW_NEXT_HOP[version]} "
            f"nlri {' '.join(map(str, chunk))}"
            for chunk in _chunks(ordered)
        ]
    return lines


def end_of_rib(peers: Sequence[IPAddress], family: str) -> str:
    """Our End-of-RIB for one family (ExaBGP runs with `manual-eor`: we say when the table is whole)."""
    return f"{_selector(peers)} announce eor {family}"


def teardown(peers: Sequence[IPAddress], subcode: int = 2) -> str:
    """Close sessions with a Cease NOTIFICATION (subcode 2: administrative shutdown), so peers
    withdraw our routes at once instead of keeping them through a graceful restart."""
    return f"{_selector(peers)} teardown {subcode}"
