"""The RIB: import policy, withdraw, peer down, and re-judging on policy change."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_network

from bgp.model import Attributes, Peer
from bgp.policy import ImportPolicy, Rejection
from bgp.rib import Rib

POOL = ip_network("10.65.0.0/16")
POLICY = ImportPolicy(
    pools=(POOL,),
    router_id=IPv4Address("10.0.0.1"),
    local_asn=64512,
    own_addresses=frozenset({ip_address("10.0.0.1")}),
    cluster_id=IPv4Address("10.0.0.254"),
)
B = Peer(ip_address("10.0.0.2"), 64512, 64512, IPv4Address("10.0.0.2"))
C = Peer(ip_address("10.0.0.3"), 64512, 64512, IPv4Address("10.0.0.3"))
P1 = ip_network("10.65.2.1/32")


def attrs(nh: str, **kw: object) -> Attributes:
    return Attributes(next_hop=ip_address(nh), **kw)  # type: ignore[arg-type]


def test_announce_withdraw() -> None:
    rib = Rib(POLICY)
    result = rib.update(B, [(P1, attrs("10.0.0.2"))])
    assert result.changes[P1] is not None and result.changes[P1].next_hops == (ip_address("10.0.0.2"),)  # type: ignore[union-attr]
    assert rib.update(B, [(P1, attrs("10.0.0.2"))]).changes == {}  # repeat: nothing changes
    assert rib.update(B, withdrawn=[P1]).changes == {P1: None}
    assert rib.loc_rib() == {}


def test_changes_name_prefixes_by_the_object_the_rib_holds() -> None:
    """A withdrawal or a re-announcement arrives as a new, equal prefix object; the changes
    carry the one the RIB already holds, so every later lookup matches it by identity."""
    rib = Rib(POLICY)
    first = ip_network("10.65.2.1/32")
    rib.update(B, [(first, attrs("10.0.0.2"))])
    again = ip_network("10.65.2.1/32")
    assert again is not first
    (changed,) = rib.update(B, [(again, attrs("10.0.0.9"))]).changes
    assert changed is first
    assert rib.announces(B.address, first).prefix is first  # type: ignore[union-attr]
    (withdrawn,) = rib.update(B, withdrawn=[ip_network("10.65.2.1/32")]).changes
    assert withdrawn is first


def test_best_path_change_and_peer_down() -> None:
    rib = Rib(POLICY, max_paths=1)
    rib.update(C, [(P1, attrs("10.0.0.3"))])
    changes = rib.update(B, [(P1, attrs("10.0.0.2"))]).changes
    assert changes[P1].best.peer == B  # type: ignore[union-attr]  # lower router id wins
    changes = rib.peer_down(B.address)
    assert changes[P1].best.peer == C  # type: ignore[union-attr]
    assert rib.peer_down(C.address) == {P1: None}


def test_ecmp_in_rib() -> None:
    rib = Rib(POLICY, max_paths=4)
    rib.update(B, [(P1, attrs("10.0.0.2"))])
    changes = rib.update(C, [(P1, attrs("10.0.0.3"))]).changes
    assert changes[P1].next_hops == (ip_address("10.0.0.2"), ip_address("10.0.0.3"))  # type: ignore[union-attr]


def test_rejections_are_counted() -> None:
    local = ip_network("10.65.1.1/32")
    rib = Rib(POLICY.with_local_prefixes({local}))
    result = rib.update(
        B,
        [
            (ip_network("10.99.0.0/24"), attrs("10.0.0.2")),
            (ip_network("0.0.0.0/0"), attrs("10.0.0.2")),
            (local, attrs("10.0.0.2")),
            (ip_network("10.65.3.0/32"), attrs("10.0.0.1")),
            (ip_network("10.65.4.0/32"), attrs("10.0.0.2", originator_id=IPv4Address("10.0.0.1"))),
            (ip_network("10.65.5.0/32"), attrs("10.0.0.2", cluster_list=(IPv4Address("10.0.0.254"),))),
        ],
    )
    assert result.changes == {}
    assert [r.reason for r in result.rejected] == [
        Rejection.OUTSIDE_POOLS,
        Rejection.DEFAULT_ROUTE,
        Rejection.LOCAL_WORKLOAD,
        Rejection.OWN_NEXT_HOP,
        Rejection.ORIGINATOR_LOOP,
        Rejection.CLUSTER_LOOP,
    ]
    assert sum(rib.rejected_total.values()) == 6


def test_default_and_extra_prefixes_when_allowed() -> None:
    from dataclasses import replace

    policy = replace(POLICY, allow_default=True, allowed=(ip_network("192.0.2.0/24"),))
    rib = Rib(policy)
    result = rib.update(
        B, [(ip_network("0.0.0.0/0"), attrs("10.0.0.2")), (ip_network("192.0.2.0/25"), attrs("10.0.0.2"))]
    )
    assert len(result.changes) == 2 and not result.rejected


def test_ebgp_as_loop() -> None:
    from bgp.model import AsPathSegment

    tor = Peer(ip_address("10.1.1.0"), 65001, 64512)
    rib = Rib(POLICY)
    result = rib.update(
        tor, [(P1, attrs("10.1.1.0", as_path=(AsPathSegment("as-sequence", (65001, 64512)),)))]
    )
    assert [r.reason for r in result.rejected] == [Rejection.AS_LOOP]


def test_ibgp_as_loop_too() -> None:
    from bgp.model import AsPathSegment

    rib = Rib(POLICY)
    result = rib.update(B, [(P1, attrs("10.0.0.2", as_path=(AsPathSegment("as-sequence", (65099, 64512)),)))])
    assert [r.reason for r in result.rejected] == [Rejection.AS_LOOP]


def test_policy_change_rejudges_stored_paths() -> None:
    rib = Rib(POLICY)
    rib.update(B, [(P1, attrs("10.0.0.2"))])
    # a local workload now owns P1: the learned route must go...
    result = rib.set_policy(POLICY.with_local_prefixes({P1}))
    assert result.changes == {P1: None}
    # ...and come back when the workload goes, without the peer re-sending it
    result = rib.set_policy(POLICY)
    assert result.changes[P1] is not None
    # the same, re-judging only the prefix that changed hands; other prefixes are not looked at
    other = ip_network("10.65.7.7/32")
    rib.update(B, [(other, attrs("10.0.0.2"))])
    result = rib.set_policy(POLICY.with_local_prefixes({P1, other}), prefixes=[P1])
    assert result.changes == {P1: None}  # `other` would also be rejected, but was not asked about
    assert rib.selection(other) is not None


def test_rejected_replacement_withdraws_earlier_path() -> None:
    rib = Rib(POLICY)
    rib.update(B, [(P1, attrs("10.0.0.2"))])
    result = rib.update(B, [(P1, attrs("10.0.0.1"))])  # now with our own next hop
    assert result.changes == {P1: None}


def test_one_update_with_several_attribute_sets_judges_each() -> None:
    """The attribute verdict is reused only for the same Attributes object within an UPDATE."""
    rib = Rib(POLICY)
    looped, fine = attrs("10.0.0.1"), attrs("10.0.0.2")  # 10.0.0.1 is our own address
    p2, p3, outside = ip_network("10.65.2.2/32"), ip_network("10.65.2.3/32"), ip_network("192.0.2.1/32")
    result = rib.update(B, [(P1, looped), (p2, fine), (p3, looped), (outside, fine)])
    assert set(result.changes) == {p2}
    assert {(r.prefix, r.reason) for r in result.rejected} == {
        (P1, Rejection.OWN_NEXT_HOP),
        (p3, Rejection.OWN_NEXT_HOP),
        (outside, Rejection.OUTSIDE_POOLS),
    }


def test_accepted_counts_follow_every_change() -> None:
    """The per-peer accepted count status reads (kept incrementally, issue 25 finding 9) equals
    a walk of the tables after any sequence of updates, withdrawals, policy changes, restarts."""
    import random

    from bgp.model import Staleness

    rng = random.Random(25)
    peers = (B, C)
    prefixes = [ip_network(f"10.65.2.{i}/32") for i in range(12)] + [ip_network("10.99.0.1/32")]

    def walked(peer: Peer) -> int:
        return sum(1 for prefix in rib.holds(peer.address) if rib._is_accepted(peer.address, prefix))

    rib = Rib(POLICY, max_paths=2)
    for _ in range(2000):
        peer = rng.choice(peers)
        action = rng.random()
        if action < 0.5:
            nh = rng.choice(["10.0.0.2", "10.0.0.3", "10.0.0.1"])  # 10.0.0.1: refused (ours)
            rib.update(peer, [(rng.choice(prefixes), attrs(nh))])
        elif action < 0.8:
            rib.update(peer, withdrawn=[rng.choice(prefixes)])
        elif action < 0.85:
            rib.peer_down(peer.address)
        elif action < 0.9:
            rib.mark_stale(peer.address, Staleness.STALE)
        elif action < 0.95:
            rib.sweep_stale(peer.address)
        else:
            local = frozenset(rng.sample(prefixes, 2))
            rib.set_policy(POLICY.with_local_prefixes(local))
        for each in peers:
            assert rib.accepted_count(each.address) == walked(each)
            assert rib.received_count(each.address) == len(rib.holds(each.address))
        assert rib.loc_rib_size() == len(rib.loc_rib())
