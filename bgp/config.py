"""The speaker's own configuration: what `bgp` needs of the node's, as frozen records.

routed builds these from its validated NodeConfig (routed/bgpconfig.py); bgp reads no file,
no YAML and no pydantic model, so its rules can be tested with a record written in a line.
Every default the node resolves (a peer's AS, hold time, graceful restart, limit) is resolved
before it gets here: a NeighborConfig says what holds for that session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Set
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address

from bgp.limits import MaxPrefixAction
from bgp.model import IPAddress, IPNetwork
from bgp.policy import ImportPolicy
from bgp.reflection import LocalSide, Role


class PeerKind(StrEnum):
    REFLECTOR = "reflector"  # we are its client
    CLIENT = "client"  # we reflect to it (we are a reflector)
    MESH = "mesh"  # iBGP full-mesh neighbour
    NONCLIENT = "nonclient"  # iBGP peer of a reflector that is not its client (another reflector)
    EBGP = "ebgp"  # another AS, e.g. a top-of-rack router


class ExportMode(StrEnum):
    ROUTES = "routes"  # every workload /32 (/128)
    AGGREGATE = "aggregate"  # the pool prefixes only


@dataclass(frozen=True, slots=True)
class ReceiveLimit:
    """A peer's max_prefixes (bgp.limits.MaxPrefixes)."""

    limit: int
    action: MaxPrefixAction = MaxPrefixAction.TEARDOWN
    restart_after: int = 60  # teardown: seconds held down (0: until a reload)


@dataclass(frozen=True, slots=True)
class NeighborConfig:
    address: IPAddress
    asn: int
    kind: PeerKind
    description: str = ""
    export: ExportMode = ExportMode.ROUTES
    max_prefixes: ReceiveLimit | None = None
    hold_time: int = 90
    graceful_restart: bool = True  # we advertise it to this peer and help it through its own
    long_lived_stale: bool = False  # its routes outlive its restart time as long-lived stale
    ttl_security: bool = False  # GTSM (RFC 5082)
    md5_password: str | None = field(default=None, repr=False)  # as read when loaded
    local_address: IPAddress | None = None  # our fabric address of its family (None: the fabric's)
    # RFC 8950: IPv4 routes over this IPv6 session, with IPv6 next hops (an IPv6-only fabric)
    extended_next_hop: bool = False
    # a client that connected from a range of clients (NeighborRange), not one listed by address
    from_range: IPNetwork | None = None
    registered: bool = False  # a client from the node's registry, not its config file

    @property
    def uses_md5(self) -> bool:
        return self.md5_password is not None

    @property
    def role(self) -> Role:
        """How reflection treats it (bgp.reflection)."""
        if self.kind is PeerKind.CLIENT:
            return Role.CLIENT
        if self.kind is PeerKind.EBGP:
            return Role.EBGP
        return Role.NONCLIENT


@dataclass(frozen=True, slots=True)
class NeighborRange:
    """Clients accepted from any address of `prefix` (BIRD's `neighbor range`, FRR's `bgp listen
    range`): each that connects is a neighbor of its own, with `template`'s settings."""

    prefix: IPNetwork
    template: NeighborConfig  # its address is the prefix's first; each client gets its own

    def neighbor(self, address: IPAddress) -> NeighborConfig:
        return dataclasses.replace(self.template, address=address, from_range=self.prefix)

    def covers(self, address: IPAddress) -> bool:
        return address.version == self.prefix.version and address in self.prefix


@dataclass(frozen=True, slots=True)
class RestartTimers:
    """Graceful restart (RFC 4724) and its long-lived extension, in seconds."""

    restart_time: int = 120  # ours, advertised; also how long start-up waits for End-of-RIBs
    stalepath_time: int = 360  # a peer back from its restart: how long its End-of-RIB may take
    select_defer_time: int = 60  # a reflector's wait for every peer's End-of-RIB before its own
    long_lived_stale_time: int = 86400  # past the restart time (peers with long_lived_stale)


@dataclass(frozen=True, slots=True)
class SpeakerConfig:
    name: str
    asn: int
    router_id: IPv4Address
    fabric_address: IPAddress  # the first; on a dual-stack fabric the IPv4 one
    pools: tuple[IPNetwork, ...]
    neighbors: tuple[NeighborConfig, ...] = ()
    reflector: bool = False  # we reflect routes between our clients
    cluster_id: IPv4Address | None = None  # set when we are a reflector
    timers: RestartTimers = RestartTimers()
    max_paths: int = 8
    local_preference: int | None = None
    communities: tuple[tuple[int, int], ...] = ()
    import_allow: tuple[IPNetwork, ...] = ()
    allow_default_route: bool = False
    next_hops: tuple[IPNetwork, ...] = ()  # where iBGP next hops may be besides the fabric's subnets
    block_lengths: tuple[int, int] = (26, 122)  # IPAM block sizes (IPv4, IPv6)
    installs_learned_routes: bool = True
    reactor_speed: float = 10.0
    fabric_address6: IPAddress | None = None  # a dual-stack fabric's IPv6 address
    ranges: tuple[NeighborRange, ...] = ()  # clients accepted by address range (a reflector's)

    @property
    def fabric_addresses(self) -> tuple[IPAddress, ...]:
        return (
            (self.fabric_address,)
            if self.fabric_address6 is None
            else (self.fabric_address, self.fabric_address6)
        )

    def range_for(self, address: IPAddress) -> NeighborRange | None:
        """The range a client connecting from `address` belongs to (ranges never overlap)."""
        return next((r for r in self.ranges if r.covers(address)), None)

    def local_address(self, peer: NeighborConfig) -> IPAddress:
        """The address a session to `peer` runs from."""
        return peer.local_address or self.fabric_address

    def block_length(self, version: int) -> int:
        return self.block_lengths[0] if version == 4 else self.block_lengths[1]

    def import_policy(
        self, fabric_subnets: tuple[IPNetwork, ...] = (), local: Set[IPNetwork] = frozenset()
    ) -> ImportPolicy:
        """What we accept from peers; iBGP next hops are checked once the fabric's subnets are known."""
        return ImportPolicy(
            pools=self.pools,
            router_id=self.router_id,
            local_asn=self.asn,
            own_addresses=frozenset({*self.fabric_addresses, self.router_id}),
            cluster_id=self.cluster_id,
            allowed=self.import_allow,
            allow_default=self.allow_default_route,
            block_lengths=self.block_lengths,
            next_hop_subnets=(*fabric_subnets, *self.next_hops) if fabric_subnets else (),
        ).with_local_prefixes(local)

    def local_side(self, draining: bool = False) -> LocalSide:
        return LocalSide(
            router_id=self.router_id,
            asn=self.asn,
            cluster_id=self.cluster_id,
            local_pref=self.local_preference,
            communities=self.communities,
            pools=self.pools,
            draining=draining,
        )


@dataclass(frozen=True, slots=True)
class Reconfiguration:
    """What a reload changes for the speaker (routed.config.reload decides it)."""

    added: tuple[IPAddress, ...] = ()
    removed: tuple[IPAddress, ...] = ()
    reset: tuple[IPAddress, ...] = ()  # same address, new session settings
    ranges_changed: bool = False  # a range of clients added, removed or given new settings
    policy_changed: bool = False  # received routes are judged again
    export_changed: bool = False  # what peers are sent is computed again

    @property
    def sessions_changed(self) -> bool:
        return bool(self.added or self.removed or self.reset or self.ranges_changed)
