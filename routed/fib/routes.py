"""Routes as routed means them: immutable values, compared by what the kernel forwards on.

Every route routed writes carries ROUTE_PROTOCOL. It never changes: ownership of a
kernel route is decided by that number alone (see docs in config/README.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from bgp.model import slot_setter

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

ROUTE_PROTOCOL = 201
ROUTE_PROTOCOL_NAME = "routed"
MAIN_TABLE = 254


@dataclass(frozen=True, slots=True, order=True)
class NextHop:
    """A gateway (`via`), or a directly attached device (`dev`, scope link), or both for an IPv6
    link-local gateway, which means something only on its interface (`via fe80::12 dev eth1`).

    The kernel reports the outgoing device of every gateway route; routed pins it only for a
    link-local gateway, so two routes via the same global gateway compare equal whatever
    device the kernel resolved.
    """

    gateway: IPAddress | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.gateway is None and self.device is None:
            raise ValueError("a next hop needs a gateway or a device")
        if self.gateway is not None and self.device is not None and not link_local(self.gateway):
            raise ValueError(f"only a link-local gateway goes with a device, not {self.gateway}")

    def __str__(self) -> str:
        if self.gateway is None:
            return f"dev {self.device}"
        return f"via {self.gateway}" + (f" dev {self.device}" if self.device else "")


def link_local(gateway: IPAddress) -> bool:
    return gateway.version == 6 and gateway.is_link_local


RouteKey = tuple[int, IPNetwork]


@dataclass(frozen=True, slots=True)
class Route:
    """A forwarding route (one or more next hops), or with `unreachable` none at all: the
    kernel answers at once that the destination is unreachable (an IPAM block's unused
    addresses), instead of sending the packet on by a shorter route."""

    dst: IPNetwork
    nexthops: tuple[NextHop, ...]
    table: int = MAIN_TABLE
    unreachable: bool = False
    # (table, dst), made once: it is a dictionary key in several places per route
    key: RouteKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.table, self.dst))
        if len(self.nexthops) == 1 and not self.unreachable:
            return
        if self.unreachable:
            if self.nexthops:
                raise ValueError(f"unreachable route {self.dst} cannot have next hops")
            return
        if not self.nexthops:
            raise ValueError(f"route {self.dst} has no next hop")
        if list(self.nexthops) != sorted(set(self.nexthops)):
            # One canonical order so that ECMP sets compare equal however they were built.
            object.__setattr__(self, "nexthops", tuple(sorted(set(self.nexthops))))

    @property
    def is_link_scope(self) -> bool:
        return len(self.nexthops) == 1 and self.nexthops[0].gateway is None

    @property
    def pins_devices(self) -> bool:
        """A gateway route with a link-local next hop: its device is part of the route."""
        return any(h.gateway is not None and h.device is not None for h in self.nexthops)

    def __str__(self) -> str:
        table = "" if self.table == MAIN_TABLE else f" table {self.table}"
        if self.unreachable:
            return f"unreachable {self.dst}{table}"
        hops = " ".join(str(h) for h in self.nexthops)
        return f"{self.dst} {hops}{table}"


def local_route(dst: IPNetwork, device: str, table: int = MAIN_TABLE) -> Route:
    """The host route to a workload: `<ip>/32 dev <host veth> scope link`."""
    return Route(dst=dst, nexthops=(NextHop(device=device),), table=table)


def unreachable_route(dst: IPNetwork, table: int = MAIN_TABLE) -> Route:
    """`unreachable <block>`: what the owner of an IPAM block routes its unused addresses to."""
    return Route(dst=dst, nexthops=(), table=table, unreachable=True)


@functools.lru_cache(maxsize=4096)
def via(gateway: IPAddress, device: str | None = None) -> NextHop:
    """One shared object per gateway: a full table has 100k routes and a handful of next hops.
    `device`: a link-local gateway's interface (ignored for any other gateway)."""
    return NextHop(gateway=gateway, device=device if link_local(gateway) else None)


@functools.lru_cache(maxsize=4096)
def _only_via(gateway: IPAddress) -> tuple[NextHop]:
    return (via(gateway),)  # shared as well: one tuple fewer per learned route


# The routes of one UPDATE share one next-hop object, and an address's hash is a Python call
# through hex() (~0.3 µs): the last one is remembered by identity before the cache is asked.
_last_via: list[tuple[IPAddress | None, tuple[NextHop, ...]]] = [(None, ())]

# Route's dataclass __init__ and __post_init__ cost ~1 µs; one learned route via one gateway
# needs none of __post_init__'s checks, and its slots set directly take ~0.5 µs.
# tests/unit/test_fast_builders.py checks the result equals Route(...).
_new = object.__new__
_set_dst, _set_nexthops = slot_setter(Route, "dst"), slot_setter(Route, "nexthops")
_set_table, _set_unreachable = slot_setter(Route, "table"), slot_setter(Route, "unreachable")
_set_key = slot_setter(Route, "key")


def gateway_route(
    dst: IPNetwork, gateways: tuple[IPAddress, ...], table: int = MAIN_TABLE, device: str | None = None
) -> Route:
    """A learned route: `via <next hop>`, or several for ECMP. `device`: the interface a
    link-local next hop is on (the fabric's)."""
    if len(gateways) != 1 or (device is not None and link_local(gateways[0])):
        return Route(dst=dst, nexthops=tuple(via(g, device) for g in gateways), table=table)
    gateway = gateways[0]
    last, hops = _last_via[0]
    if gateway is not last:
        hops = _only_via(gateway)
        _last_via[0] = (gateway, hops)
    route: Route = _new(Route)
    _set_dst(route, dst)
    _set_nexthops(route, hops)
    _set_table(route, table)
    _set_unreachable(route, False)
    _set_key(route, (table, dst))
    return route
