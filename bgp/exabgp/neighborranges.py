"""Neighbour ranges in routed's route commands: `neighbor FIRST-LAST` names every neighbour
whose address is in that range.

A reflector's change goes to every client but its origin, so at 1,000 clients each command
named 999 neighbours (`neighbor A , neighbor B , ...`, 21.7 KB): the daemon formatted and
wrote it, ExaBGP read it in two reactor turns (16 KB a read), split it and looked up 999
selectors. Clients that join from an address range mostly have consecutive addresses, so
bgp.exabgp.commands writes each run of them as one range (a reflector of 1,000 such clients
names them in a few selectors), and bgp.exabgp.manypeers.match_addresses matches a range
here, through the configured neighbours' addresses kept sorted. Only routed's ExaBGP reads a
range, and only in the route commands apiparse recognises as routed's own; ExaBGP's own
matching would match nothing to it, and answers such a command with an error.
"""

from __future__ import annotations

import ipaddress

AddressIndex = dict[int, tuple[list[int], list[set[str]]]]  # IP version -> addresses, their names


def address_index(index: dict[str, set[str]]) -> AddressIndex:
    """The `neighbor ADDRESS` pairs of a pair index by IP version, sorted by address (but for
    link-local addresses with a scope, which routed names one by one)."""
    found: dict[int, list[tuple[int, set[str]]]] = {4: [], 6: []}
    for pair, names in index.items():
        if pair.startswith("neighbor "):
            try:
                address = ipaddress.ip_address(pair[9:])
            except ValueError:
                continue
            if getattr(address, "scope_id", None) is None:  # one with its scope is only ever named
                found[address.version].append((int(address), names))
    by_version: AddressIndex = {}
    for version, pairs in found.items():
        pairs.sort(key=lambda pair: pair[0])
        by_version[version] = ([number for number, _ in pairs], [names for _, names in pairs])
    return by_version


def address_range(selector: str) -> tuple[int, int, int] | None:
    """(IP version, first, last) of a `neighbor FIRST-LAST` selector, both of one family and in
    order; else None."""
    first, _, last = selector.removeprefix("neighbor ").partition("-")
    try:
        low, high = ipaddress.ip_address(first), ipaddress.ip_address(last)
    except ValueError:
        return None
    if low.version != high.version or int(low) > int(high):
        return None
    return low.version, int(low), int(high)
