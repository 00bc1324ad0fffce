"""Import policy: which received routes may enter the RIB. Pure; on by default.

A peer can never take over a local workload's address or anything inside a block we own,
a prefix outside the pools, or the default route unless allowed; inside the pools only
host prefixes and whole blocks are accepted; loops (RFC 4456 originator and cluster, and
our AS in an eBGP path) are dropped; a next hop of ours is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address

from bgp.model import Attributes, IPAddress, IPNetwork, Peer


class Rejection(StrEnum):
    OUTSIDE_POOLS = "outside pools"
    DEFAULT_ROUTE = "default route"
    LOCAL_WORKLOAD = "local workload prefix"
    OWN_BLOCK = "inside a block of ours"
    BLOCK_LENGTH = "neither a block nor a host prefix"
    OWN_NEXT_HOP = "next hop is this node"
    ORIGINATOR_LOOP = "originator id is ours"
    CLUSTER_LOOP = "cluster list has our cluster id"
    AS_LOOP = "our AS in AS path"


@dataclass(frozen=True, slots=True)
class ImportPolicy:
    pools: tuple[IPNetwork, ...]
    router_id: IPv4Address
    local_asn: int
    own_addresses: frozenset[IPAddress]
    cluster_id: IPv4Address | None = None
    allowed: tuple[IPNetwork, ...] = ()  # extra prefixes accepted besides the pools
    allow_default: bool = False
    local_prefixes: frozenset[IPNetwork] = field(default_factory=frozenset)
    # prefix length of an IPAM block per IP version: inside the pools, the only other length
    # accepted besides a host prefix (None: any length, as before blocks)
    block_lengths: tuple[int, int] | None = (26, 122)
    # (version, length, mask, address) as integers, made once: pools, allowed prefixes, and
    # our own prefixes shorter than a host (our blocks)
    pool_bounds: tuple[tuple[int, int, int, int], ...] = field(init=False, repr=False, compare=False)
    allowed_bounds: tuple[tuple[int, int, int, int], ...] = field(init=False, repr=False, compare=False)
    own_block_bounds: tuple[tuple[int, int, int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pool_bounds", _bounds(self.pools))
        object.__setattr__(self, "allowed_bounds", _bounds(self.allowed))
        blocks = [p for p in self.local_prefixes if p.prefixlen < p.max_prefixlen]
        object.__setattr__(self, "own_block_bounds", _bounds(blocks))

    def with_local_prefixes(self, prefixes: Set[IPNetwork]) -> ImportPolicy:
        from dataclasses import replace

        return replace(self, local_prefixes=frozenset(prefixes))


def _bounds(networks: Iterable[IPNetwork]) -> tuple[tuple[int, int, int, int], ...]:
    return tuple((n.version, n.prefixlen, int(n.netmask), int(n.network_address)) for n in networks)


def _within(prefix: IPNetwork, bounds: tuple[tuple[int, int, int, int], ...]) -> bool:
    # integer arithmetic: ipaddress's subnet_of() was a tenth of all CPU in a 100k-route bulk load;
    # and ipaddress's own fields, not its properties (three Python calls per check): the same
    # internals routed/prefixes.py builds on, checked by tests/unit/test_prefixes.py
    address, version, length = prefix.network_address._ip, prefix._version, prefix._prefixlen  # type: ignore[union-attr]
    for net_version, net_length, mask, net_address in bounds:
        if version == net_version and length >= net_length and address & mask == net_address:
            return True
    return False


def check_prefix(policy: ImportPolicy, prefix: IPNetwork) -> Rejection | None:
    """The checks that depend on the prefix alone."""
    if prefix._prefixlen == 0:  # type: ignore[union-attr]
        if not policy.allow_default:
            return Rejection.DEFAULT_ROUTE
    elif _within(prefix, policy.pool_bounds):
        lengths = policy.block_lengths
        if (
            lengths is not None
            and prefix.prefixlen != prefix.max_prefixlen
            and prefix.prefixlen != lengths[prefix.version == 6]
            and not _within(prefix, policy.allowed_bounds)
        ):
            return Rejection.BLOCK_LENGTH
    elif not _within(prefix, policy.allowed_bounds):
        return Rejection.OUTSIDE_POOLS
    if prefix in policy.local_prefixes:
        return Rejection.LOCAL_WORKLOAD
    if policy.own_block_bounds and _within(prefix, policy.own_block_bounds):
        return Rejection.OWN_BLOCK  # someone else's /32 in our block: a hijack of our address
    return None


def check_attributes(policy: ImportPolicy, attrs: Attributes, peer: Peer) -> Rejection | None:
    """The checks that depend on the path's attributes alone: one answer for a whole UPDATE."""
    if attrs.next_hop in policy.own_addresses:
        return Rejection.OWN_NEXT_HOP
    if attrs.originator_id == policy.router_id:
        return Rejection.ORIGINATOR_LOOP
    if policy.cluster_id is not None and policy.cluster_id in attrs.cluster_list:
        return Rejection.CLUSTER_LOOP
    # a loop whoever sends it: an iBGP peer has no business passing on a path that already
    # left our AS (found by a hostile-speaker test; eBGP ingress used to be the only check)
    if policy.local_asn in attrs.asns():
        return Rejection.AS_LOOP
    return None


def check_import(policy: ImportPolicy, prefix: IPNetwork, attrs: Attributes, peer: Peer) -> Rejection | None:
    """None if the route is accepted, else why not."""
    return check_prefix(policy, prefix) or check_attributes(policy, attrs, peer)
