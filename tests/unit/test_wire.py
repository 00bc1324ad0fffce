"""BGP UPDATEs decoded from their bytes (bgp/exabgp/wire.py), against messages built by hand."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest

from bgp.exabgp.wire import MalformedUpdate, decode_update
from bgp.model import AsPathSegment, Attributes, EndOfRib, Origin, RouteUpdate
from tests.support.updates import ATTRS, PEER, attr, body

EXPECTED = Attributes(
    next_hop=IPv4Address("10.0.0.1"),
    origin=Origin.IGP,
    as_path=(AsPathSegment("as-sequence", (64513, 4200000000)),),
    med=5,
    local_pref=100,
    communities=((64512, 7), (65535, 1)),
    originator_id=IPv4Address("10.0.0.9"),
    cluster_list=(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")),
)


def test_ipv4_routes_share_one_attributes_object() -> None:
    nlri = bytes([32, 10, 65, 1, 7]) + bytes([26, 10, 65, 1, 64]) + bytes([0])
    decoded = decode_update(body(ATTRS, nlri, withdrawn=bytes([24, 10, 99, 0])), PEER, 64512)
    assert isinstance(decoded, RouteUpdate)
    assert [p for p, _ in decoded.announced] == [
        ip_network("10.65.1.7/32"),
        ip_network("10.65.1.64/26"),
        ip_network("0.0.0.0/0"),
    ]
    assert all(a is decoded.announced[0][1] for _, a in decoded.announced)
    assert decoded.announced[0][1] == EXPECTED
    assert decoded.withdrawn == (ip_network("10.99.0.0/24"),)
    assert hash(decoded.announced[0][0]) == hash(ip_network("10.65.1.7/32"))


def test_ipv6_through_mp_reach_and_unreach() -> None:
    hop = IPv6Address("fd00::11").packed + IPv6Address("fe80::1").packed
    reach = struct.pack("!HBB", 2, 1, 32) + hop + b"\x00" + bytes([128]) + IPv6Address("fd00:65::7").packed
    unreach = struct.pack("!HB", 2, 1) + bytes([64]) + IPv6Address("fd00:66::").packed[:8]
    attrs = attr(1, b"\x02") + attr(2, b"") + attr(14, reach, 0x80) + attr(15, unreach, 0x80)
    decoded = decode_update(body(attrs), PEER, 64512)
    assert isinstance(decoded, RouteUpdate)
    ((prefix, attributes),) = decoded.announced
    assert prefix == ip_network("fd00:65::7/128")
    assert attributes == Attributes(next_hop=IPv6Address("fd00::11"), origin=Origin.INCOMPLETE)
    assert decoded.withdrawn == (ip_network("fd00:66::/64"),)


def test_end_of_rib_markers() -> None:
    assert decode_update(body(), PEER, 64512) == EndOfRib(PEER, "ipv4 unicast")
    empty_unreach = attr(15, struct.pack("!HB", 2, 1), 0x80)
    assert decode_update(body(empty_unreach), PEER, 64512) == EndOfRib(PEER, "ipv6 unicast")


def test_trailing_bits_past_the_length_are_ignored() -> None:
    decoded = decode_update(body(ATTRS, bytes([25, 10, 65, 1, 255])), PEER, 64512)
    assert isinstance(decoded, RouteUpdate)
    assert decoded.announced[0][0] == ip_network("10.65.1.128/25")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\x00", "withdrawn routes run past"),
        (struct.pack("!HH", 0, 40) + b"\x40\x01", "attributes run past"),
        (body(b"\x40\x02\x09\x02"), "attribute 2 runs past the attributes"),
        (body(ATTRS, bytes([33, 10, 0, 0, 0, 0])), "prefix of length 33"),
        (body(ATTRS, bytes([32, 10, 0])), "does not fit"),
        (body(attr(1, b"\x00"), bytes([32, 10, 0, 0, 1])), "without a NEXT_HOP"),
        (body(ATTRS.replace(bytes([2, 2]), bytes([7, 2]), 1), bytes([8, 10])), "AS_PATH segment of type 7"),
    ],
)
def test_malformed_updates_are_refused(data: bytes, needle: str) -> None:
    with pytest.raises(MalformedUpdate, match=needle):
        decode_update(data, PEER, 64512)
