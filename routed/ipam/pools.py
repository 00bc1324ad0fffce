"""Address pools: which address a new workload gets. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class PoolExhausted(Exception):
    pass


class NotInPool(Exception):
    pass


def pool_of(ip: IPAddress, pools: Iterable[IPNetwork]) -> IPNetwork | None:
    return next((p for p in pools if p.version == ip.version and ip in p), None)


def _usable(pool: IPNetwork) -> tuple[int, int]:
    """First and last assignable address of a pool, as integers.

    IPv4 pools wider than /31 skip the network and broadcast addresses, which
    some stacks still treat specially; IPv6 pools wider than /127 skip the
    subnet-router anycast address (the all-zeros one, RFC 4291 2.6.1).
    """
    first, last = int(pool.network_address), int(pool.broadcast_address)
    if pool.version == 4 and pool.prefixlen < 31:
        first, last = first + 1, last - 1
    elif pool.version == 6 and pool.prefixlen < 127:
        first += 1
    return first, last


def allocate(pools: Sequence[IPNetwork], used: Set[IPAddress], version: int) -> IPAddress:
    """The lowest free address of the first pool of `version` that has one."""
    candidates = [p for p in pools if p.version == version]
    if not candidates:
        raise NotInPool(f"no IPv{version} pool is configured; add one to pools:")
    taken = sorted(int(ip) for ip in used if ip.version == version)
    for pool in candidates:
        first, last = _usable(pool)
        candidate = first
        for value in taken:  # sorted, so one pass finds the first gap
            if value < candidate:
                continue
            if value > candidate:
                break
            candidate += 1
        if candidate <= last:
            return IPv4Address(candidate) if version == 4 else IPv6Address(candidate)
    raise PoolExhausted(
        f"every IPv{version} pool is full ({', '.join(map(str, candidates))}); "
        "add a pool or delete unused workloads"
    )


def check_requested(ip: IPAddress, pools: Sequence[IPNetwork], used: Set[IPAddress]) -> None:
    pool = pool_of(ip, pools)
    if pool is None:
        raise NotInPool(
            f"{ip} is outside every pool ({', '.join(map(str, pools))}); "
            "pick an address from a pool or omit --ip"
        )
    first, last = _usable(pool)
    if not first <= int(ip) <= last:
        raise NotInPool(f"{ip} is a reserved address of {pool} (network, broadcast or anycast); pick another")
    if ip in used:
        raise NotInPool(f"{ip} is already in use by another workload")
