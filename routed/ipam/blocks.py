"""IPAM blocks: pools cut into fixed-size blocks, each owned by one node. Pure, no I/O.

A node hands out addresses only from blocks it owns, so two nodes can never hand out the
same address, and the fabric needs one route per block instead of one per workload. The
first address of every block is never handed out: 10.65.1.0/26 gives 10.65.1.1 first, which
reads as a host address to people and to stacks that still treat a .0 specially.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Set
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def block_of(ip: IPAddress, length: int) -> IPNetwork:
    """The block of `length` that holds `ip`."""
    return ip_network((ip, length), strict=False)


def block_problem(
    block: IPNetwork, pools: Iterable[IPNetwork], length: int, reserved: Iterable[IPAddress] = ()
) -> str | None:
    """Why `block` cannot be one of ours (None if it can): of the configured size for its family,
    inside a pool, and holding none of the `reserved` addresses (the node's fabric address: an
    unreachable route over it would cut the node off its own fabric)."""
    if block.prefixlen != length:
        return f"a /{block.prefixlen}, not a /{length} (the IPv{block.version} block size)"
    if not any(block.version == p.version and block.subnet_of(p) for p in pools):  # type: ignore[arg-type]
        return "outside every pool"
    for address in reserved:
        if address.version == block.version and address in block:
            return f"holds this node's fabric address {address}"
    return None


def blocks_in(pool: IPNetwork, length: int) -> Iterator[IPNetwork]:
    """Every block of a pool, lowest first; lazily, as an IPv6 pool holds billions."""
    if pool.prefixlen > length:
        return
    yield from pool.subnets(new_prefix=length)


def first_unclaimed(
    pools: Sequence[IPNetwork], version: int, length: int, claimed: Set[IPNetwork]
) -> Iterator[IPNetwork]:
    """Blocks nobody has claimed, lowest first, pool by pool."""
    for pool in pools:
        if pool.version != version:
            continue
        for block in blocks_in(pool, length):
            if block not in claimed:
                yield block


def usable(block: IPNetwork, pools: Iterable[IPNetwork]) -> range:
    """The addresses of a block that may be handed out, as integers.

    Skips the block's first address (see the module doc) and, in the last block of an IPv4
    pool wider than /31, the pool's broadcast address.
    """
    first, last = int(block.network_address) + 1, int(block.broadcast_address)
    for pool in pools:
        if pool.version == 4 == block.version and pool.prefixlen < 31 and last == int(pool.broadcast_address):
            last -= 1
    return range(first, last + 1)


def first_free(
    blocks: Sequence[IPNetwork],
    used: Set[IPAddress],
    pools: Iterable[IPNetwork],
    within: Sequence[IPNetwork] | None = None,
) -> IPAddress | None:
    """The lowest free address of the first of `blocks` (in the order given) that has one;
    with `within` (a Docker network's subnet), only addresses inside one of those."""
    pools = tuple(pools)
    taken = {int(ip) for ip in used}
    for block in blocks:
        if within is not None and not overlaps(block, within):
            continue
        for value in usable(block, pools):
            if value in taken:
                continue
            ip = IPv4Address(value) if block.version == 4 else IPv6Address(value)
            if within is None or any(ip in net for net in within if net.version == ip.version):
                return ip
    return None


def overlaps(block: IPNetwork, within: Iterable[IPNetwork]) -> bool:
    return any(net.version == block.version and net.overlaps(block) for net in within)


def containing(ip: IPAddress, blocks: Iterable[IPNetwork]) -> IPNetwork | None:
    return next((b for b in blocks if b.version == ip.version and ip in b), None)


def announced(
    blocks: Iterable[IPNetwork], hosted: Iterable[IPNetwork], owned: Iterable[IPNetwork] | None = None
) -> set[IPNetwork]:
    """What a node announces: each of `blocks` (those ready: installed), plus a host prefix
    only for an address it hosts outside every block it `owned` (default: `blocks`) — a
    workload from before blocks, or `--ip` outside its own blocks. A /32 inside an owned block
    whose route is not installed yet is not announced on its own: the block will be."""
    out: set[IPNetwork] = set(blocks)
    owned = list(out if owned is None else owned)
    for prefix in hosted:
        if not any(prefix.version == b.version and prefix.subnet_of(b) for b in owned):  # type: ignore[arg-type]
            out.add(prefix)
    return out


def in_use(block: IPNetwork, used: Iterable[IPAddress]) -> int:
    return sum(1 for ip in used if ip.version == block.version and ip in block)
