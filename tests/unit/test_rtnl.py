"""The route messages we pack for rtnetlink read back as what we meant. Pure."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, ip_address, ip_network

from routed.fib import rtnl


def roundtrip(data: bytes) -> rtnl.RouteMessage:
    ((kind, _flags, seq, payload),) = list(rtnl.messages(data))
    assert seq == 7
    decoded = rtnl.decode(kind, payload)
    assert decoded is not None
    return decoded


def test_gateway_route() -> None:
    data = rtnl.encode("add", 7, ip_network("10.65.2.1/32"), 254, 201, gateways=(ip_address("10.0.0.12"),))
    length, kind, flags, _, _ = rtnl.HEADER.unpack_from(data)
    assert length == len(data) and kind == rtnl.RTM_NEWROUTE
    assert flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK | rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    msg = roundtrip(data)
    assert (msg.dst, msg.table, msg.protocol) == (ip_network("10.65.2.1/32"), 254, 201)
    assert msg.hops == (rtnl.Hop(ip_address("10.0.0.12"), 0),)


def test_multipath_ipv6_and_big_table() -> None:
    gateways = (ip_address("fd00::12"), ip_address("fd00::13"))
    data = rtnl.encode("replace", 7, ip_network("fd00:65::1/128"), 1000, 201, gateways=gateways)
    family = rtnl.RTMSG.unpack_from(data, rtnl.HEADER.size)[0]
    assert family == socket.AF_INET6
    msg = roundtrip(data)
    assert msg.table == 1000  # carried in RTA_TABLE, rtm_table says "compat"
    assert [h.gateway for h in msg.hops] == list(gateways)


def test_an_ipv4_route_via_an_ipv6_next_hop_is_rta_via() -> None:
    """RFC 8950 on an IPv6-only fabric: `ip route add 10.65.2.0/26 via inet6 fd00::12`."""
    data = rtnl.encode("add", 7, ip_network("10.65.2.0/26"), 254, 201, gateways=(ip_address("fd00::12"),))
    attrs = dict(rtnl._attrs(memoryview(data)[rtnl.HEADER.size :], rtnl.RTMSG.size))
    assert rtnl.RTA_GATEWAY not in attrs
    assert bytes(attrs[rtnl.RTA_VIA]) == struct.pack("=H", socket.AF_INET6) + ip_address("fd00::12").packed
    msg = roundtrip(data)
    assert rtnl.RTMSG.unpack_from(data, rtnl.HEADER.size)[0] == socket.AF_INET
    assert msg.hops == (rtnl.Hop(ip_address("fd00::12"), 0),)
    both = (ip_address("fd00::12"), ip_address("fd00::13"))
    ecmp = roundtrip(rtnl.encode("replace", 7, ip_network("10.65.2.0/26"), 254, 201, gateways=both))
    assert [h.gateway for h in ecmp.hops] == list(both)


def test_device_route_and_delete() -> None:
    msg = roundtrip(rtnl.encode("add", 7, ip_network("10.65.0.1/32"), 254, 201, oif=42))
    assert msg.hops == (rtnl.Hop(None, 42),)
    data = rtnl.encode("delete", 7, ip_network("10.65.0.1/32"), 254, 201, gateways=(ip_address("10.0.0.1"),))
    _, kind, flags, _, _ = rtnl.HEADER.unpack_from(data)
    assert kind == rtnl.RTM_DELROUTE and flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK
    scope = rtnl.RTMSG.unpack_from(data, rtnl.HEADER.size)[6]
    assert scope == rtnl.SCOPE_NOWHERE
    assert roundtrip(data).hops == ()  # a delete names no next hop


def test_default_route_and_errors() -> None:
    msg = roundtrip(
        rtnl.encode("add", 7, ip_network("0.0.0.0/0"), 254, 201, gateways=(ip_address("10.0.0.1"),))
    )
    assert msg.dst == ip_network("0.0.0.0/0")
    ack = rtnl.HEADER.pack(36, rtnl.NLMSG_ERROR, 0, 9, 0) + struct.pack("=i", -17) + b"\0" * 16
    ((kind, _, seq, payload),) = list(rtnl.messages(ack))
    assert (kind, seq, rtnl.error_code(payload)) == (rtnl.NLMSG_ERROR, 9, 17)


def test_batch_of_messages_splits_back() -> None:
    data = b"".join(rtnl.encode("add", 7, ip_network(f"10.65.0.{i}/32"), 254, 201, oif=3) for i in range(5))
    assert len(list(rtnl.messages(data))) == 5


def test_fast_ipv4_gateway_encoding_is_byte_identical() -> None:
    for action, dst, table in (
        ("add", "10.65.2.1/32", 254),
        ("replace", "10.64.0.0/10", 1000),
        ("add", "0.0.0.0/0", 100),
    ):
        gateway = ip_address("10.0.0.12")
        assert isinstance(gateway, IPv4Address)
        for ack in (True, False):
            slow = rtnl._pack(action, 9, ip_network(dst), table, 201, (gateway,), None, ack)
            assert rtnl.encode(action, 9, ip_network(dst), table, 201, gateways=(gateway,), ack=ack) == slow


def test_unreachable_route_has_its_type_and_no_next_hop() -> None:
    for action in ("add", "delete"):
        data = rtnl.encode(action, 7, ip_network("10.65.1.0/26"), 254, 201, route_type=rtnl.RTN_UNREACHABLE)
        route_type = rtnl.RTMSG.unpack_from(data, rtnl.HEADER.size)[7]
        assert route_type == rtnl.RTN_UNREACHABLE  # a delete of type unicast would not match it
        msg = roundtrip(data)
        assert (msg.dst, msg.route_type, msg.hops) == (ip_network("10.65.1.0/26"), rtnl.RTN_UNREACHABLE, ())


def test_a_link_local_next_hop_carries_its_interface() -> None:
    """`via fe80::13 dev <7>`: RTA_OIF beside the gateway, or each multipath hop's ifindex."""
    one = roundtrip(
        rtnl.encode(
            "add",
            7,
            ip_network("fd00:65:0:3::/122"),
            254,
            201,
            gateways=(ip_address("fe80::13"),),
            gateway_oifs=(7,),
        )
    )
    assert one.hops == (rtnl.Hop(ip_address("fe80::13"), 7),)
    v4 = roundtrip(
        rtnl.encode(
            "add",
            7,
            ip_network("10.65.3.0/26"),
            254,
            201,
            gateways=(ip_address("fe80::13"),),
            gateway_oifs=(7,),
        )
    )
    assert v4.hops == (rtnl.Hop(ip_address("fe80::13"), 7),)
    both = (ip_address("fe80::13"), ip_address("fd00::12"))
    ecmp = roundtrip(
        rtnl.encode("add", 7, ip_network("10.65.3.0/26"), 254, 201, gateways=both, gateway_oifs=(7, 0))
    )
    assert ecmp.hops == (rtnl.Hop(both[0], 7), rtnl.Hop(both[1], 0))


def test_link_state_says_whether_a_link_is_a_port_of_a_bridge() -> None:
    up = 0x1 | 0x10000  # IFF_UP | IFF_LOWER_UP
    header = rtnl.IFINFOMSG.pack(socket.AF_UNSPEC, 1, 7, up, 0)
    name = rtnl._attr(rtnl.IFLA_IFNAME, b"veth1\0")

    def member_of(kind: bytes) -> bytes:
        return rtnl._attr(rtnl.IFLA_LINKINFO | 0x8000, rtnl._attr(rtnl.IFLA_INFO_SLAVE_KIND, kind + b"\0"))

    assert rtnl.link_state(memoryview(header + name)) == (7, "veth1", True, False)
    assert rtnl.link_state(memoryview(header + name + member_of(b"bridge"))) == (7, "veth1", True, True)
    assert rtnl.link_state(memoryview(header + name + member_of(b"bond"))) == (7, "veth1", True, True)
    # a VRF's member carries routes (in the VRF's table): still worth a fresh read
    assert rtnl.link_state(memoryview(header + name + member_of(b"vrf"))) == (7, "veth1", True, False)
