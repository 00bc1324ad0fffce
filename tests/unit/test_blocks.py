"""IPAM blocks: arithmetic (IPv4 and IPv6), allocation, what a node announces, the static mode,
the import policy for blocks and conflicts. Pure."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, ip_address, ip_network

import pytest

from bgp.conflicts import HIJACK, TWICE, ConflictTracker
from bgp.model import Attributes, Path, Peer
from bgp.policy import ImportPolicy, Rejection, check_prefix
from bgp.rib import Rib
from routed.config import parse_config
from routed.ipam import blocks
from routed.ipam.backends import Refused, StaticIpam
from tests.support.nodes import node_yaml

POOL = ip_network("10.65.0.0/16")
POOL6 = ip_network("fd00:65::/48")
B1 = ip_network("10.65.1.0/26")
B6 = ip_network("fd00:65::/122")
NODE = node_yaml(
    "peers: [{address: 10.0.0.1, kind: reflector}, {address: 'fd00::1', kind: reflector}]",
    "ipam: {mode: static, blocks: [10.65.1.0/26, 10.65.1.64/26, 'fd00:65::/122']}",
    pools="10.65.0.0/16, fd00:65::/48",
    me6="fd00::11",
)


def test_block_arithmetic_v4_and_v6() -> None:
    assert blocks.block_of(ip_address("10.65.1.70"), 26) == ip_network("10.65.1.64/26")
    assert blocks.block_of(ip_address("fd00:65::41"), 122) == ip_network("fd00:65::40/122")
    assert next(blocks.blocks_in(POOL, 26)) == ip_network("10.65.0.0/26")
    assert sum(1 for _ in blocks.blocks_in(ip_network("10.65.0.0/24"), 26)) == 4
    assert list(blocks.blocks_in(ip_network("10.65.0.0/28"), 26)) == []  # a pool smaller than a block
    # lazily: the first free block of a /48 in /122s is found without listing 2**74 of them
    claimed = {ip_network("fd00:65::/122"), ip_network("fd00:65::40/122")}
    assert next(blocks.first_unclaimed([POOL, POOL6], 6, 122, claimed)) == ip_network("fd00:65::80/122")


def test_usable_skips_the_first_address_and_the_pool_broadcast() -> None:
    assert blocks.usable(B1, [POOL]) == range(int(ip_address("10.65.1.1")), int(ip_address("10.65.1.63")) + 1)
    last = ip_network("10.65.255.192/26")
    assert blocks.usable(last, [POOL])[-1] == int(ip_address("10.65.255.254"))
    assert len(blocks.usable(B6, [POOL6])) == 63


def test_first_free_in_block_order() -> None:
    b2 = ip_network("10.65.1.64/26")
    used = {ip_address("10.65.1.1"), ip_address("10.65.1.3")}
    assert blocks.first_free([B1, b2], used, [POOL]) == ip_address("10.65.1.2")
    full = {ip_address(n) for n in blocks.usable(B1, [POOL])}
    assert blocks.first_free([B1, b2], full, [POOL]) == ip_address("10.65.1.65")
    assert blocks.first_free([B1], full, [POOL]) is None
    assert blocks.first_free([B6], set(), [POOL6]) == ip_address("fd00:65::1")


def test_announced_is_blocks_plus_hosts_outside_them() -> None:
    hosted = [ip_network("10.65.1.1/32"), ip_network("10.65.9.9/32")]
    assert blocks.announced([B1], hosted) == {B1, ip_network("10.65.9.9/32")}
    assert blocks.announced([], hosted) == set(hosted)  # mode none: every /32
    # the block's route not installed yet: neither it nor its /32s (no transient /32 at start)
    assert blocks.announced([], hosted, owned=[B1]) == {ip_network("10.65.9.9/32")}


def test_static_allocation_and_refusals() -> None:
    cfg = parse_config(NODE, "h1.yaml")
    owners = {ip_network("10.65.2.0/26"): "10.0.0.12", ip_network("10.65.9.9/32"): "10.0.0.13"}
    ipam = StaticIpam(cfg, lambda ip: next(((b, o) for b, o in owners.items() if ip in b), None))

    def assign(requested: list[str], used: set[str]) -> list[str]:
        got = asyncio.run(ipam.assign("w", [ip_address(r) for r in requested], {ip_address(u) for u in used}))
        return [str(ip) for ip in got]

    assert assign([], set()) == ["10.65.1.1", "fd00:65::1"]
    assert assign([], {"10.65.1.1"}) == ["10.65.1.2", "fd00:65::1"]
    assert assign(["10.65.1.9"], set()) == ["10.65.1.9"]
    assert assign(["10.65.7.7"], set()) == ["10.65.7.7"]  # nobody's block: allowed, announced as a /32
    with pytest.raises(
        Refused, match=r"10.65.2.1 is inside block 10.65.2.0/26, which belongs to the node at 10.0.0.12"
    ):
        assign(["10.65.2.1"], set())
    with pytest.raises(Refused, match=r"10.65.9.9 is announced by the node at 10.0.0.13"):
        assign(["10.65.9.9"], set())  # an owner lookup that names a /32 (the speaker's names blocks only)
    with pytest.raises(Refused, match="already in use"):
        assign(["10.65.1.9"], {"10.65.1.9"})
    full = {str(ip_address(n)) for b in cfg.ipam.blocks[:2] for n in blocks.usable(b, cfg.pool_networks)}
    with pytest.raises(Refused, match="every IPv4 block of this node is full"):
        assign([], full)


POLICY = ImportPolicy(
    pools=(POOL, POOL6),
    router_id=IPv4Address("10.0.0.11"),
    local_asn=64512,
    own_addresses=frozenset({ip_address("10.0.0.11")}),
    allowed=(ip_network("10.65.200.0/24"),),
)


def test_policy_accepts_hosts_and_blocks_only() -> None:
    assert check_prefix(POLICY, ip_network("10.65.2.0/26")) is None
    assert check_prefix(POLICY, ip_network("10.65.2.1/32")) is None
    assert check_prefix(POLICY, ip_network("fd00:65::40/122")) is None
    assert check_prefix(POLICY, ip_network("10.65.2.0/24")) is Rejection.BLOCK_LENGTH
    assert check_prefix(POLICY, ip_network("10.65.2.0/27")) is Rejection.BLOCK_LENGTH
    assert check_prefix(POLICY, ip_network("fd00:65::/64")) is Rejection.BLOCK_LENGTH
    assert check_prefix(POLICY, ip_network("10.65.200.0/24")) is None  # import_allow: any length
    assert check_prefix(POLICY, ip_network("10.99.0.0/26")) is Rejection.OUTSIDE_POOLS


def test_policy_guards_our_blocks_and_addresses() -> None:
    mine = POLICY.with_local_prefixes({B1, ip_network("10.65.9.9/32")})
    assert check_prefix(mine, B1) is Rejection.LOCAL_WORKLOAD
    assert check_prefix(mine, ip_network("10.65.1.5/32")) is Rejection.OWN_BLOCK
    assert check_prefix(mine, ip_network("10.65.9.9/32")) is Rejection.LOCAL_WORKLOAD
    assert check_prefix(mine, ip_network("10.65.1.64/26")) is None  # the next block is someone else's


def path(prefix: str, next_hop: str, originator: str | None = None, peer: str = "10.0.0.1") -> Path:
    attrs = Attributes(
        next_hop=ip_address(next_hop), originator_id=IPv4Address(originator) if originator else None
    )
    return Path(ip_network(prefix), Peer(ip_address(peer), 64512, 64512, IPv4Address(peer)), attrs)


def test_conflicts_reported_once_and_cleared() -> None:
    rib = Rib(POLICY.with_local_prefixes({B1}))
    tracker = ConflictTracker("h1", [POOL, POOL6])
    peer = Peer(ip_address("10.0.0.1"), 64512, 64512, IPv4Address("10.0.0.1"))
    hijack = Attributes(next_hop=ip_address("10.0.0.12"), originator_id=IPv4Address("10.0.0.12"))
    result = rib.update(peer, [(ip_network("10.65.1.5/32"), hijack)])
    (rejected,) = result.rejected
    assert rejected.origin == ip_address("10.0.0.12")
    conflict = tracker.rejected(rejected)
    assert conflict is not None and conflict.kind == HIJACK
    assert conflict.nodes == ("h1 (this node)", "10.0.0.12")
    assert tracker.rejected(rejected) is None  # once
    tracker.prune_hijacks(lambda prefix, node: False)
    assert tracker.json()["current"] == 0 and tracker.rejected(rejected) is not None  # back: again
    # two origins for one block (a reflector's view): one conflict; one origin via two reflectors: none
    twice = [
        path("10.65.2.0/26", "10.0.0.12", peer="10.0.0.12"),
        path("10.65.2.0/26", "10.0.0.13", peer="10.0.0.13"),
    ]
    found = tracker.paths(ip_network("10.65.2.0/26"), twice)
    assert found is not None and found.kind == TWICE and found.nodes == ("10.0.0.12", "10.0.0.13")
    assert tracker.paths(ip_network("10.65.2.0/26"), twice) is None
    reflected = [
        path("10.65.3.0/26", "10.0.0.13", "10.0.0.13"),
        path("10.65.3.0/26", "10.0.0.13", "10.0.0.13", "10.0.0.2"),
    ]
    assert tracker.paths(ip_network("10.65.3.0/26"), reflected) is None
    # one origin arriving both ways: straight from it (no ORIGINATOR_ID: its router id, whatever
    # next hop it sent, a link-local one here) and through a reflector (its ORIGINATOR_ID)
    both_ways = [
        path("10.65.8.1/32", "fe80::1", peer="10.0.0.41"),
        path("10.65.8.1/32", "10.0.0.41", "10.0.0.41", "10.0.0.1"),
    ]
    assert tracker.paths(ip_network("10.65.8.1/32"), both_ways) is None
    tracker.paths(ip_network("10.65.2.0/26"), twice[:1])
    assert [c["prefix"] for c in tracker.json()["list"]] == ["10.65.1.5/32"]  # type: ignore[index]
    # our own block back through reflectors of another cluster (ORIGINATOR_ID: our router id):
    # refused as a loop, and no conflict
    ours = ConflictTracker("h1", [POOL], own=[ip_address("10.0.0.11")])
    looped = Attributes(next_hop=ip_address("10.0.0.11"), originator_id=IPv4Address("10.0.0.11"))
    (back,) = rib.update(peer, [(B1, looped)]).rejected
    assert back.origin == ip_address("10.0.0.11") and ours.rejected(back) is None
