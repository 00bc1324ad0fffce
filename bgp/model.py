"""BGP records: attributes, peers, paths and the events the speaker reacts to. Immutable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

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


def slot_setter(cls: type, field_name: str) -> Callable[[Any, Any], None]:
    """The descriptor that sets one slot of a frozen slots dataclass, bypassing its frozen
    __setattr__: for constructors on hot paths, where the dataclass's __init__ (one
    object.__setattr__ call per field) costs more than the work around it. Only for an
    object being built, never to change one already handed out."""
    setter: Callable[[Any, Any], None] = getattr(cls, field_name).__set__
    return setter


# Path's __init__ costs ~0.75 µs, once per received route; setting its slots directly
# ~0.5 µs. tests/unit/test_fast_builders.py checks the result equals Path(...).
_new = object.__new__
_set_prefix, _set_peer = slot_setter(Path, "prefix"), slot_setter(Path, "peer")
_set_attrs, _set_stale = slot_setter(Path, "attrs"), slot_setter(Path, "stale")


def origin(path: Path) -> IPAddress:
    """The node a path comes from: its originator id when reflected, else the router id of the
    peer it came from (the same id a reflector would have put in ORIGINATOR_ID), else its next
    hop. One identity per node, whichever way its route arrives."""
    return path.attrs.originator_id or path.peer.router_id or path.attrs.next_hop


def fresh_path(prefix: IPNetwork, peer: Peer, attrs: Attributes) -> Path:
    """Path(prefix, peer, attrs), built faster, for the RIB's hot loop."""
    path: Path = _new(Path)
    _set_prefix(path, prefix)
    _set_peer(path, peer)
    _set_attrs(path, attrs)
    _set_stale(path, Staleness.FRESH)
    return path


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


@dataclass(frozen=True, slots=True)
class Export:
    """Attributes we attach to routes we send (an Adj-RIB-Out entry). next_hop None means `self`."""

    next_hop: IPAddress | None = None
    origin: Origin = Origin.IGP
    as_path: tuple[int, ...] = ()
    med: int | None = None
    local_pref: int | None = None
    communities: tuple[tuple[int, int], ...] = ()
    originator_id: IPv4Address | None = None
    cluster_list: tuple[IPv4Address, ...] = ()
    # computed once: an export plan groups a reflector's 1,000 clients by their Export, and an
    # address's hash is computed in Python each time (ipaddress), three of them here
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = (self.next_hop, self.origin, self.as_path, self.med, self.local_pref, self.communities)
        object.__setattr__(self, "_hash", hash((*fields, self.originator_id, self.cluster_list)))

    def __hash__(self) -> int:
        return self._hash
