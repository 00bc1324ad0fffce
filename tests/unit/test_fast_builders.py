"""The hot-path constructors that set a frozen dataclass's slots directly build exactly what
the dataclass's own constructor builds: equal, same hash, every field the same object."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, ip_address, ip_network
from typing import Any

import pytest

from bgp.decision import Reason, Selection, select
from bgp.model import Attributes, Path, Peer, Staleness, fresh_path
from bgp.prefixes import parse
from routed.fib.routes import NextHop, Route, gateway_route

PEER = Peer(ip_address("10.0.0.1"), 64512, 64512, IPv4Address("10.0.0.1"))
ATTRS = Attributes(next_hop=ip_address("10.0.0.1"), local_pref=100)


def same(built: Any, reference: Any) -> None:
    assert type(built) is type(reference)
    assert built == reference and hash(built) == hash(reference) and repr(built) == repr(reference)
    for field in dataclasses.fields(reference):
        assert getattr(built, field.name) == getattr(reference, field.name), field.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.__setattr__(dataclasses.fields(reference)[0].name, None)


@pytest.mark.parametrize("text", ["10.65.1.7/32", "fd00:65::7/128", "10.64.0.0/10"])
def test_fresh_path_is_a_path(text: str) -> None:
    prefix = parse(text)
    same(fresh_path(prefix, PEER, ATTRS), Path(prefix, PEER, ATTRS))
    assert fresh_path(prefix, PEER, ATTRS).stale is Staleness.FRESH


def test_a_single_path_selection_is_a_selection() -> None:
    path = Path(parse("10.65.1.7/32"), PEER, ATTRS)
    paths = (path,)
    selection = select(paths)
    assert selection is not None
    same(selection, Selection(path, paths, Reason.ONLY_PATH))
    assert selection.multipath is paths  # the RIB's tuple, shared


@pytest.mark.parametrize("table", [254, 100, 1000])
def test_a_learned_route_is_a_route(table: int) -> None:
    gateway = ip_address("10.0.0.12")
    for text in ("10.65.1.7/32", "10.65.1.8/32"):
        dst = parse(text)
        built = gateway_route(dst, (gateway,), table)
        same(built, Route(dst, (NextHop(gateway=gateway),), table))
        assert built.key == (table, dst)
    # another gateway object, equal or not, after the remembered one
    other = gateway_route(parse("10.65.1.9/32"), (ip_address("10.0.0.13"),), table)
    assert other.nexthops == (NextHop(gateway=ip_address("10.0.0.13")),)
    again = gateway_route(parse("10.65.1.9/32"), (ip_address("10.0.0.12"),), table)
    assert again.nexthops == (NextHop(gateway=gateway),)


def test_ecmp_routes_still_go_through_the_dataclass() -> None:
    hops = (ip_address("10.0.0.13"), ip_address("10.0.0.12"))
    route = gateway_route(ip_network("10.65.1.7/32"), hops)
    assert [h.gateway for h in route.nexthops] == sorted(hops)


def test_a_link_local_gateway_keeps_its_device_and_only_it() -> None:
    from routed.fib.routes import NextHop, gateway_route, via

    assert str(via(ip_address("fe80::13"), "eth1")) == "via fe80::13 dev eth1"
    assert via(ip_address("fd00::13"), "eth1") == NextHop(gateway=ip_address("fd00::13"))  # not pinned
    route = gateway_route(ip_network("10.65.3.0/26"), (ip_address("fe80::13"),), 254, "eth1")
    assert (
        route.pins_devices and not route.is_link_scope and str(route) == "10.65.3.0/26 via fe80::13 dev eth1"
    )
    plain = gateway_route(ip_network("10.65.3.0/26"), (ip_address("fd00::13"),), 254, "eth1")
    assert not plain.pins_devices and plain == Route(
        dst=ip_network("10.65.3.0/26"), nexthops=(via(ip_address("fd00::13")),)
    )
    with pytest.raises(ValueError, match="only a link-local gateway"):
        NextHop(gateway=ip_address("10.0.0.12"), device="eth1")
