"""Import policy on next hops and the default receive limit (issue 25, finding 5). Pure."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_network

import pytest

from bgp.limits import MaxPrefixAction
from bgp.model import Attributes, Peer
from bgp.policy import ImportPolicy, Rejection, check_attributes
from routed.config import parse_config
from routed.config.derived import resolved_peers
from tests.support.nodes import node_yaml

POLICY = ImportPolicy(
    pools=(ip_network("10.65.0.0/16"), ip_network("fd00:65::/48")),
    router_id=IPv4Address("10.0.0.11"),
    local_asn=64512,
    own_addresses=frozenset({ip_address("10.0.0.11")}),
    local_prefixes=frozenset({ip_network("10.65.1.1/32")}),
    next_hop_subnets=(ip_network("10.0.0.0/24"), ip_network("fd00:0:0:1::/64"), ip_network("10.1.0.0/16")),
)
IBGP = Peer(ip_address("10.0.0.12"), 64512, 64512)
EBGP = Peer(ip_address("10.1.1.0"), 65001, 64512)


def judged(next_hop: str, peer: Peer = IBGP, policy: ImportPolicy = POLICY) -> Rejection | None:
    return check_attributes(policy, Attributes(next_hop=ip_address(next_hop)), peer)


@pytest.mark.parametrize(
    ("next_hop", "reason"),
    [
        ("10.65.1.1", Rejection.NEXT_HOP_IN_POOLS),  # a local workload: steered into a container
        ("10.65.2.9", Rejection.NEXT_HOP_IN_POOLS),  # another host's container
        ("fd00:65::7", Rejection.NEXT_HOP_IN_POOLS),
        ("127.0.0.1", Rejection.NEXT_HOP_MARTIAN),
        ("0.0.0.0", Rejection.NEXT_HOP_MARTIAN),
        ("224.0.0.1", Rejection.NEXT_HOP_MARTIAN),
        ("255.255.255.255", Rejection.NEXT_HOP_MARTIAN),
        ("169.254.1.1", Rejection.NEXT_HOP_MARTIAN),  # the workloads' gateway
        ("::1", Rejection.NEXT_HOP_MARTIAN),
        ("::", Rejection.NEXT_HOP_MARTIAN),
        ("::ffff:10.0.0.12", Rejection.NEXT_HOP_MARTIAN),  # Linux blackholes these
        ("ff02::1", Rejection.NEXT_HOP_MARTIAN),
        ("10.0.0.11", Rejection.OWN_NEXT_HOP),
        ("192.0.2.1", Rejection.NEXT_HOP_OFF_FABRIC),
        ("fd00:0:0:2::12", Rejection.NEXT_HOP_OFF_FABRIC),
    ],
)
def test_refused_next_hops(next_hop: str, reason: Rejection) -> None:
    assert judged(next_hop) is reason


@pytest.mark.parametrize("next_hop", ["10.0.0.12", "fd00:0:0:1::12", "fe80::12", "10.1.7.12"])
def test_next_hops_on_the_fabric_are_taken(next_hop: str) -> None:
    assert judged(next_hop) is None  # (10.1.0.0/16: an extra bgp.next_hops subnet)


def test_an_ebgp_peer_may_name_a_next_hop_off_our_subnets_but_never_a_martian_or_a_container() -> None:
    assert judged("192.0.2.1", EBGP) is None  # a third-party next hop beyond the ToR
    assert judged("127.0.0.1", EBGP) is Rejection.NEXT_HOP_MARTIAN
    assert judged("10.65.2.9", EBGP) is Rejection.NEXT_HOP_IN_POOLS


def test_with_the_fabric_subnets_unknown_only_the_off_fabric_check_is_left_out() -> None:
    from dataclasses import replace

    unknown = replace(POLICY, next_hop_subnets=())
    assert judged("192.0.2.1", policy=unknown) is None
    assert judged("127.0.0.1", policy=unknown) is Rejection.NEXT_HOP_MARTIAN


BASE = (
    node_yaml("mesh: full")
    + """\
mesh_nodes: [10.0.0.11, 10.0.0.13]
peers:
  - {address: 10.0.0.1, kind: reflector}
  - {address: 10.0.0.2, kind: reflector, max_prefixes: {limit: 10, action: teardown}}
"""
)


def test_every_peer_has_a_receive_limit_by_default() -> None:
    cfg = parse_config(BASE, "h1.yaml")
    plain, own, mesh = resolved_peers(cfg)
    assert plain.max_prefixes is not None and mesh.max_prefixes is not None
    assert (plain.max_prefixes.limit, plain.max_prefixes.action) == (250_000, MaxPrefixAction.DROP)
    assert mesh.max_prefixes == plain.max_prefixes
    assert own.max_prefixes is not None and own.max_prefixes.limit == 10
    raised = resolved_peers(parse_config(BASE + "bgp: {max_prefixes: 1000000}\n", "h1.yaml"))[0]
    assert raised.max_prefixes is not None and raised.max_prefixes.limit == 1_000_000
    off = resolved_peers(parse_config(BASE + "bgp: {max_prefixes: null}\n", "h1.yaml"))[0]
    assert off.max_prefixes is None
