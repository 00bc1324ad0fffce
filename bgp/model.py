"""BGP records: attributes, peers, paths and the events the speaker reacts to. Immutable."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


GRACEFUL_SHUTDOWN = (65535, 0)  # RFC 8326's well-known community: the sender is about to go


class Origin(IntEnum):
    IGP = 0
    EGP = 1
    INCOMPLETE = 2


@dataclass(frozen=True, slots=True)
class AsPathSegment:
    kind: str  # "as-sequence" or "as-set" (confederation segments count as zero length)
    asns: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Attributes:
    next_hop: IPAddress
    origin: Origin = Origin.IGP
    as_path: tuple[AsPathSegment, ...] = ()
    med: int | None = None
    local_pref: int | None = None
    communities: tuple[tuple[int, int], ...] = ()
    originator_id: IPv4Address | None = None
    cluster_list: tuple[IPv4Address, ...] = ()

    @property
    def as_path_length(self) -> int:
        """RFC 4271 9.1.2.2 a: an AS_SET counts as 1, a sequence as its length."""
        total = 0
        for segment in self.as_path:
            if segment.kind == "as-sequence":
                total += len(segment.asns)
            elif segment.kind == "as-set":
                total += 1
        return total

    @property
    def neighbour_as(self) -> int | None:
        """The AS the route came from (first AS of the path); None if originated in our AS."""
        for segment in self.as_path:
            if segment.kind == "as-sequence" and segment.asns:
                return segment.asns[0]
        return None

    def asns(self) -> set[int]:
        return {asn for segment in self.as_path for asn in segment.asns}


@dataclass(frozen=True, slots=True)
class Peer:
    address: IPAddress
    asn: int
    local_asn: int
    router_id: IPv4Address | None = None  # the BGP identifier from its OPEN

    @property
    def ebgp(self) -> bool:
        return self.asn != self.local_asn


class Staleness(IntEnum):
    """How much a path can still be trusted; lower is better, and best path prefers lower.

    STALE: kept through the peer's graceful restart (RFC 4724) until its End-of-RIB or
    restart time. LONG_LIVED: kept after that, as local policy while no reflector is up.
    """

    FRESH = 0
    STALE = 1
    LONG_LIVED = 2


@dataclass(frozen=True, slots=True)
class Path:
    prefix: IPNetwork
    peer: Peer
    attrs: Attributes
    stale: Staleness = Staleness.FRESH


# --- events from the speaker (ExaBGP), already parsed ----------------------------


@dataclass(frozen=True, slots=True)
class PeerState:
    peer: IPAddress
    peer_asn: int
    state: str  # connected | up | down
    reason: str = ""


@dataclass(frozen=True, slots=True)
class GracefulRestartCapability:
    """What a peer's OPEN said about RFC 4724 graceful restart."""

    restart_time: int
    restarted: bool  # the R bit: it has just restarted
    forwarding: frozenset[int]  # IP versions whose forwarding state it kept (the F bits)


@dataclass(frozen=True, slots=True)
class PeerOpen:
    peer: IPAddress
    router_id: IPv4Address
    graceful_restart: GracefulRestartCapability | None = None
    families: frozenset[str] = frozenset({"ipv4 unicast"})  # e.g. "ipv6 unicast"


@dataclass(frozen=True, slots=True)
class RouteUpdate:
    peer: IPAddress
    peer_asn: int
    announced: tuple[tuple[IPNetwork, Attributes], ...] = ()
    withdrawn: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class EndOfRib:
    peer: IPAddress
    family: str  # "ipv4 unicast" | "ipv6 unicast"


@dataclass(frozen=True, slots=True)
class Notification:
    peer: IPAddress
    code: int
    subcode: int
    data: str = ""


@dataclass(frozen=True, slots=True)
class CommandAnswer:
    ok: bool
    text: str = field(default="")


Event = PeerState | PeerOpen | RouteUpdate | EndOfRib | Notification | CommandAnswer
