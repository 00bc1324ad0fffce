"""Import policy: which received routes may enter the RIB. Pure; on by default.

A peer can never take over a local workload's address or anything inside a block we own,
a prefix outside the pools, or the default route unless allowed; inside the pools only
host prefixes and whole blocks are accepted; loops (RFC 4456 originator and cluster, and
our AS in an eBGP path) are dropped; a next hop of ours is ignored. A next hop must be one a
packet can be sent to: never inside the pools (a container's address: another host's block
would be steered into that container), never martian (loopback, unspecified, multicast,
reserved, IPv4 link-local, IPv4-mapped), and from an iBGP peer on the fabric's own subnets
(or the extra `bgp.next_hops` subnets of an L3 fabric).
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, ip_network

from bgp.model import Attributes, IPAddress, IPNetwork, Peer

MARTIAN_NEXT_HOPS = tuple(
    ip_network(n)
    for n in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",  # reserved, and 255.255.255.255
        "::/96",  # unspecified, loopback, IPv4-compatible
        "::ffff:0:0/96",  # IPv4-mapped: Linux blackholes an IPv6 route via one
        "ff00::/8",
    )
)


class Rejection(StrEnum):
    OUTSIDE_POOLS = "outside pools"
    DEFAULT_ROUTE = "default route"
    LOCAL_WORKLOAD = "local workload prefix"
    OWN_BLOCK = "inside a block of ours"
    BLOCK_LENGTH = "neither a block nor a host prefix"
    OWN_NEXT_HOP = "next hop is this node"
    NEXT_HOP_IN_POOLS = "next hop inside the pools"
    NEXT_HOP_MARTIAN = "martian next hop"
    NEXT_HOP_OFF_FABRIC = "next hop off the fabric"
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
    # where an iBGP peer's next hops may be: the fabric interface's subnets and any extra ones
    # configured (empty: not known, not checked); IPv6 link-local next hops are on-link anyway
    next_hop_subnets: tuple[IPNetwork, ...] = ()
    # (version, length, mask, address) as integers, made once: pools, allowed prefixes, and
    # our own prefixes shorter than a host (our blocks)
    pool_bounds: tuple[tuple[int, int, int, int], ...] = field(init=False, repr=False, compare=False)
    allowed_bounds: tuple[tuple[int, int, int, int], ...] = field(init=False, repr=False, compare=False)
    own_block_bounds: tuple[tuple[int, int, int, int], ...] = field(init=False, repr=False, compare=False)
    next_hop_bounds: tuple[tuple[int, int, int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "next_hop_bounds", _bounds(self.next_hop_subnets))
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
    # internals bgp/prefixes.py builds on, checked by tests/unit/test_prefixes.py
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


def _address_within(address: IPAddress, bounds: tuple[tuple[int, int, int, int], ...]) -> bool:
    value, version = int(address), address.version
    return any(version == v and value & mask == net for v, _, mask, net in bounds)


_MARTIAN_BOUNDS = _bounds(MARTIAN_NEXT_HOPS)
_IPV6_LINK_LOCAL = _bounds([ip_network("fe80::/10")])


def check_next_hop(policy: ImportPolicy, next_hop: IPAddress, peer: Peer) -> Rejection | None:
    if next_hop in policy.own_addresses:
        return Rejection.OWN_NEXT_HOP
    if _address_within(next_hop, _MARTIAN_BOUNDS):
        return Rejection.NEXT_HOP_MARTIAN
    if _address_within(next_hop, policy.pool_bounds):
        return Rejection.NEXT_HOP_IN_POOLS
    if (
        not peer.ebgp
        and policy.next_hop_bounds
        and not _address_within(next_hop, policy.next_hop_bounds)
        and not _address_within(next_hop, _IPV6_LINK_LOCAL)
    ):
        return Rejection.NEXT_HOP_OFF_FABRIC
    return None


def check_attributes(policy: ImportPolicy, attrs: Attributes, peer: Peer) -> Rejection | None:
    """The checks that depend on the path's attributes alone: one answer for a whole UPDATE."""
    if rejected := check_next_hop(policy, attrs.next_hop, peer):
        return rejected
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
