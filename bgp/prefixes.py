"""IP prefixes made fast and hashed once, for the paths that handle a full table.

A learned /32 is a dictionary key a dozen times on its way from ExaBGP to the
kernel (Adj-RIB-In, Loc-RIB, Adj-RIB-Out, the FIB's desired set and its view of
the kernel), and `ipaddress` recomputes a network's hash in Python on every
lookup and builds each one through a string parser. These subclasses are the
same values (equal to, and hashing like, the `ipaddress` objects, so the two mix
freely as keys) with the hash computed once, built straight from integers.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

_MASKS4 = [IPv4Address(((1 << 32) - 1) ^ ((1 << (32 - n)) - 1)) for n in range(33)]
_MASKS6 = [IPv6Address(((1 << 128) - 1) ^ ((1 << (128 - n)) - 1)) for n in range(129)]


class _HashedOnce:
    """Mixed in before an ipaddress network class: the same hash, computed once."""

    _hash: int

    def __init__(self, address: object, strict: bool = True) -> None:
        # ipaddress's own methods (supernet, subnets) build instances of our classes
        super().__init__(address, strict)  # type: ignore[call-arg]
        self._hash = hash(int(self.network_address) ^ int(self.netmask))  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        # A dict lookup that finds its key compares the two with ==, and ipaddress's own
        # __eq__ (versions, address objects, two int() of the netmasks) was a tenth of the
        # daemon's CPU in a 100k bulk load. Ours against ours: two integers and the class.
        if type(other) is type(self):
            return (
                self._hash == other._hash
                and self.network_address._ip == other.network_address._ip  # type: ignore[attr-defined]
                and self._prefixlen == other._prefixlen  # type: ignore[attr-defined]
            )
        result: bool = super().__eq__(other)
        return result


class Prefix4(_HashedOnce, IPv4Network):
    pass


class Prefix6(_HashedOnce, IPv6Network):
    pass


# _build sets the fields IPv4Network.__init__ and IPv4Address(int) would set (CPython's
# ipaddress internals, unchanged since 3.3, hence Any; tests/unit/test_prefixes.py compares
# the results with ipaddress's own objects, so a change shows up there).


def _build(network: type[Any], address_type: type[Any], bits: int, value: int, length: int) -> Any:
    mask = (_MASKS4 if bits == 32 else _MASKS6)[length]
    if value & ~int(mask) or not 0 <= value < 1 << bits:
        raise ValueError(f"{address_type(value & ((1 << bits) - 1))}/{length} has host bits set")
    address = object.__new__(address_type)
    address._ip = value
    if bits == 128:
        address._scope_id = None
    prefix = object.__new__(network)
    prefix.network_address = address
    prefix.netmask = mask
    prefix._prefixlen = length
    prefix._hash = hash(value ^ int(mask))
    return prefix


def prefix4(value: int, length: int) -> IPv4Network:
    """The IPv4 prefix value/length; host bits must be zero (as `ip_network`, strict)."""
    built: IPv4Network = _build(Prefix4, IPv4Address, 32, value, length)
    return built


def prefix6(value: int, length: int) -> IPv6Network:
    built: IPv6Network = _build(Prefix6, IPv6Address, 128, value, length)
    return built


def from_packed(packed: bytes, length: int) -> IPv4Network | IPv6Network:
    """From the address bytes of a netlink or BGP message (4 or 16 of them)."""
    value = int.from_bytes(packed, "big")
    if len(packed) == 4:
        if not 0 <= length <= 32:
            raise ValueError(f"prefix length {length} is not valid for IPv4")
        return prefix4(value, length)
    if len(packed) == 16:
        if not 0 <= length <= 128:
            raise ValueError(f"prefix length {length} is not valid for IPv6")
        return prefix6(value, length)
    raise ValueError(f"an address is 4 or 16 bytes, not {len(packed)}")


def parse(text: str) -> IPv4Network | IPv6Network:
    """'10.65.1.7/32' or 'fd00::1/128' (a bare address is its host prefix), strictly."""
    address, slash, length_text = text.partition("/")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        packed = socket.inet_pton(family, address)
    except OSError:
        raise ValueError(f"{text!r} is not an IP prefix") from None
    if not slash:
        return from_packed(packed, len(packed) * 8)
    if not length_text.isdigit() or not length_text.isascii():
        raise ValueError(f"{text!r} is not an IP prefix: bad length")
    return from_packed(packed, int(length_text))
