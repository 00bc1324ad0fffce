"""The decision process, one rule at a time, in the RFC's order."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_network

from bgp.decision import Reason, select
from bgp.model import AsPathSegment, Attributes, Origin, Path, Peer

PREFIX = ip_network("10.65.1.1/32")
LOCAL_AS = 64512


def path(
    peer: str, nh: str | None = None, asn: int = LOCAL_AS, rid: str | None = None, **attrs: object
) -> Path:
    p = Peer(ip_address(peer), asn, LOCAL_AS, IPv4Address(rid) if rid else IPv4Address(peer))
    return Path(PREFIX, p, Attributes(next_hop=ip_address(nh or peer), **attrs))  # type: ignore[arg-type]


def seq(*asns: int) -> tuple[AsPathSegment, ...]:
    return (AsPathSegment("as-sequence", asns),)


def test_single_path() -> None:
    only = path("10.0.0.2")
    selection = select([only])
    assert selection is not None and selection.best == only and selection.reason is Reason.ONLY_PATH
    assert select([]) is None


def test_highest_local_pref() -> None:
    low, high = path("10.0.0.2", local_pref=100), path("10.0.0.3", local_pref=200)
    assert (s := select([low, high])) and s.best == high and s.reason is Reason.LOCAL_PREF


def test_shortest_as_path_and_as_set_counts_one() -> None:
    long = path("10.0.0.2", as_path=seq(1, 2, 3))
    short = path("10.0.0.3", as_path=(AsPathSegment("as-sequence", (1,)), AsPathSegment("as-set", (5, 6, 7))))
    assert (s := select([long, short])) and s.best == short and s.reason is Reason.AS_PATH


def test_lowest_origin() -> None:
    igp, incomplete = path("10.0.0.3", origin=Origin.IGP), path("10.0.0.2", origin=Origin.INCOMPLETE)
    assert (s := select([incomplete, igp])) and s.best == igp and s.reason is Reason.ORIGIN


def test_med_only_within_same_neighbour_as() -> None:
    a_high = path("10.0.0.2", as_path=seq(65001), med=50)
    a_low = path("10.0.0.3", as_path=seq(65001), med=10)
    assert (s := select([a_high, a_low])) and s.best == a_low and s.reason is Reason.MED
    # different neighbour AS: MED is not compared, a later rule decides
    b_high = path("10.0.0.1", as_path=seq(65002), med=99)
    s = select([a_high, b_high])
    assert s is not None and s.reason is Reason.ROUTER_ID and s.best == b_high


def test_ebgp_over_ibgp() -> None:
    ibgp = path("10.0.0.2", as_path=seq(65001))
    ebgp = path("10.0.0.3", asn=65001, as_path=seq(65001))
    assert (s := select([ibgp, ebgp])) and s.best == ebgp and s.reason is Reason.EBGP


def test_shortest_cluster_list() -> None:
    two = path("10.0.0.2", cluster_list=(IPv4Address("1.1.1.1"), IPv4Address("2.2.2.2")))
    one = path("10.0.0.3", cluster_list=(IPv4Address("1.1.1.1"),))
    assert (s := select([two, one])) and s.best == one and s.reason is Reason.CLUSTER_LIST


def test_lowest_originator_id_or_router_id() -> None:
    a = path("10.0.0.2", rid="9.9.9.9", originator_id=IPv4Address("3.3.3.3"))
    b = path("10.0.0.3", rid="1.1.1.1", originator_id=IPv4Address("4.4.4.4"))
    assert (s := select([a, b])) and s.best == a and s.reason is Reason.ROUTER_ID
    c = path("10.0.0.4", rid="2.2.2.2")
    d = path("10.0.0.5", rid="1.1.1.1")
    assert (s := select([c, d])) and s.best == d


def test_lowest_peer_address() -> None:
    a = path("10.0.0.9", rid="1.1.1.1")
    b = path("10.0.0.3", rid="1.1.1.1")
    assert (s := select([a, b])) and s.best == b and s.reason is Reason.PEER_ADDRESS


def test_ecmp_equal_paths_share() -> None:
    a, b, c = path("10.0.0.2"), path("10.0.0.3"), path("10.0.0.4")
    s = select([c, a, b], max_paths=2)
    assert s is not None and s.best == a
    assert s.next_hops == (ip_address("10.0.0.2"), ip_address("10.0.0.3"))
    assert select([a, b, c], max_paths=8).next_hops == tuple(ip_address(f"10.0.0.{i}") for i in (2, 3, 4))  # type: ignore[union-attr]


def test_ecmp_excludes_worse_paths_and_same_next_hop() -> None:
    good = path("10.0.0.2")
    worse = path("10.0.0.3", local_pref=50)
    same_nh = path("10.0.0.4", nh="10.0.0.2")
    s = select([good, worse, same_nh], max_paths=8)
    assert s is not None and s.next_hops == (ip_address("10.0.0.2"),)
