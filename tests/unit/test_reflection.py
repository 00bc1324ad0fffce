"""RFC 4456 reflection, rule by rule, and what each kind of peer is sent."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_network

import pytest

from bgp.model import AsPathSegment, Attributes, Path, Peer
from bgp.reflection import LocalSide, Role, advertise, may_reflect

RR = LocalSide(
    router_id=IPv4Address("10.0.0.1"),
    asn=64512,
    cluster_id=IPv4Address("10.0.0.254"),
    pools=(ip_network("10.65.0.0/16"),),
)
NODE = LocalSide(
    router_id=IPv4Address("10.0.0.11"), asn=64512, cluster_id=None, pools=(ip_network("10.65.0.0/16"),)
)
PREFIX = ip_network("10.65.2.1/32")
H2 = Peer(ip_address("10.0.0.12"), 64512, 64512, IPv4Address("10.0.0.12"))
TOR = Peer(ip_address("10.1.1.0"), 65001, 64512, IPv4Address("10.1.1.0"))


def learned(peer: Peer = H2, **kw: object) -> Path:
    return Path(PREFIX, peer, Attributes(next_hop=peer.address, local_pref=100, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "target", "reflected"),
    [
        (Role.CLIENT, Role.CLIENT, True),  # client -> other clients
        (Role.CLIENT, Role.NONCLIENT, True),  # client -> non-clients
        (Role.NONCLIENT, Role.CLIENT, True),  # non-client -> clients
        (Role.NONCLIENT, Role.NONCLIENT, False),  # non-client -> non-client: not reflected
        (Role.EBGP, Role.CLIENT, True),
        (Role.EBGP, Role.NONCLIENT, True),
        (Role.CLIENT, Role.EBGP, True),
    ],
)
def test_reflection_rules(source: Role, target: Role, reflected: bool) -> None:
    assert may_reflect(source, target) is reflected
    export = advertise(RR, ip_address("10.0.0.13"), target, False, learned(), source)
    assert (export is not None) is reflected


def test_reflected_attributes() -> None:
    export = advertise(RR, ip_address("10.0.0.13"), Role.CLIENT, False, learned(med=7), Role.CLIENT)
    assert export is not None
    assert export.next_hop == ip_address("10.0.0.12")  # unchanged
    assert export.originator_id == IPv4Address("10.0.0.12")  # the originating router
    assert export.cluster_list == (IPv4Address("10.0.0.254"),)
    assert (export.med, export.local_pref) == (7, 100)


def test_existing_originator_kept_and_cluster_prepended() -> None:
    path = learned(originator_id=IPv4Address("10.0.0.99"), cluster_list=(IPv4Address("10.9.9.9"),))
    export = advertise(RR, ip_address("10.0.0.13"), Role.CLIENT, False, path, Role.NONCLIENT)
    assert export is not None
    assert export.originator_id == IPv4Address("10.0.0.99")
    assert export.cluster_list == (IPv4Address("10.0.0.254"), IPv4Address("10.9.9.9"))


def test_never_back_to_the_source() -> None:
    assert advertise(RR, H2.address, Role.CLIENT, False, learned(), Role.CLIENT) is None


def test_only_the_best_path_and_withdraw_when_gone() -> None:
    # the caller passes only the best path; no best path means withdraw (None)
    assert advertise(RR, ip_address("10.0.0.13"), Role.CLIENT, False, None, None) is None


def test_node_does_not_pass_ibgp_routes_on() -> None:
    assert advertise(NODE, ip_address("10.0.0.13"), Role.NONCLIENT, False, learned(), Role.NONCLIENT) is None


def test_local_routes_go_to_everyone_with_next_hop_self() -> None:
    for role in Role:
        export = advertise(NODE, ip_address("10.0.0.13"), role, True, None, None)
        assert export is not None and export.next_hop is None and export.originator_id is None


def test_ebgp_export_is_plain_and_only_pool_routes() -> None:
    export = advertise(RR, TOR.address, Role.EBGP, False, learned(), Role.CLIENT)
    assert export is not None
    assert export.next_hop is None and export.originator_id is None and not export.cluster_list
    assert export.local_pref is None
    outside = Path(ip_network("192.0.2.0/24"), H2, Attributes(next_hop=H2.address))
    assert advertise(RR, TOR.address, Role.EBGP, False, outside, Role.CLIENT) is None


def test_ebgp_learned_to_ibgp_keeps_path_without_reflection_attributes() -> None:
    path = learned(TOR, as_path=(AsPathSegment("as-sequence", (65001, 65000)),))
    export = advertise(NODE, ip_address("10.0.0.13"), Role.NONCLIENT, False, path, Role.EBGP)
    assert export is not None
    assert export.as_path == (65001, 65000) and export.originator_id is None and not export.cluster_list
