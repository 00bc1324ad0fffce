"""Import policy: which received routes may enter the RIB. Pure; on by default.

A peer can never take over a local workload's address, a prefix outside the pools,
or the default route unless allowed; loops (RFC 4456 originator and cluster, and our
AS in an eBGP path) are dropped; a next hop of ours is ignored.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address

from bgp.model import Attributes, IPAddress, IPNetwork, Peer


class Rejection(StrEnum):
    OUTSIDE_POOLS = "outside pools"
    DEFAULT_ROUTE = "default route"
    LOCAL_WORKLOAD = "local workload prefix"
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
    # (version, length, mask, address) of pools and allowed prefixes, as integers, made once
    acceptable: tuple[tuple[int, int, int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        networks = (*self.pools, *self.allowed)
        bounds = tuple((n.version, n.prefixlen, int(n.netmask), int(n.network_address)) for n in networks)
        object.__setattr__(self, "acceptable", bounds)

    def with_local_prefixes(self, prefixes: Set[IPNetwork]) -> ImportPolicy:
        from dataclasses import replace

        return replace(self, local_prefixes=frozenset(prefixes))


def _within(prefix: IPNetwork, bounds: tuple[tuple[int, int, int, int], ...]) -> bool:
    # integer arithmetic: ipaddress's subnet_of() was a tenth of all CPU in a 100k-route bulk load
    address, version, length = int(prefix.network_address), prefix.version, prefix.prefixlen
    for net_version, net_length, mask, net_address in bounds:
        if version == net_version and length >= net_length and address & mask == net_address:
            return True
    return False


def check_prefix(policy: ImportPolicy, prefix: IPNetwork) -> Rejection | None:
    """The checks that depend on the prefix alone."""
    if prefix.prefixlen == 0:
        if not policy.allow_default:
            return Rejection.DEFAULT_ROUTE
    elif not _within(prefix, policy.acceptable):
        return Rejection.OUTSIDE_POOLS
    if prefix in policy.local_prefixes:
        return Rejection.LOCAL_WORKLOAD
    return None


def check_attributes(policy: ImportPolicy, attrs: Attributes, peer: Peer) -> Rejection | None:
    """The checks that depend on the path's attributes alone: one answer for a whole UPDATE."""
    if attrs.next_hop in policy.own_addresses:
        return Rejection.OWN_NEXT_HOP
    if attrs.originator_id == policy.router_id:
        return Rejection.ORIGINATOR_LOOP
    if policy.cluster_id is not None and policy.cluster_id in attrs.cluster_list:
        return Rejection.CLUSTER_LOOP
    if peer.ebgp and policy.local_asn in attrs.asns():
        return Rejection.AS_LOOP
    return None


def check_import(policy: ImportPolicy, prefix: IPNetwork, attrs: Attributes, peer: Peer) -> Rejection | None:
    """None if the route is accepted, else why not."""
    return check_prefix(policy, prefix) or check_attributes(policy, attrs, peer)
