"""What the speaker queues for ExaBGP: per-peer Adj-RIB-Out, families, aggregates. No process runs."""

from __future__ import annotations

import dataclasses
import re
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path

from bgp.config import ExportMode
from bgp.exabgp.config import render_config, render_environment
from bgp.model import Attributes, Peer
from bgp.speaker import Speaker
from routed.bgpconfig import speaker_config
from routed.config import parse_config
from routed.fib.reconciler import Reconciler
from routed.fib.sink import FibSink
from tests.unit.fakekernel import FakeKernel

NODE = """\
name: h1
router_id: 10.0.0.11
asn: 64512
fabric: {interface: eth1, address: 10.0.0.11, address6: "fd00::11"}
pools: [10.65.0.0/16, fd00:65::/48]
peers:
  - {address: 10.0.0.1, kind: reflector}
  - {address: 10.1.1.0, kind: ebgp, asn: 65001, export: aggregate}
  - {address: "fd00::1", kind: reflector}
fib: {install_learned: true}
"""


# a reflector of two clients and a non-client
NODE_RR = """\
name: rr1
router_id: 10.0.0.1
asn: 64512
role: reflector
cluster_id: 10.0.0.254
fabric: {interface: eth1, address: 10.0.0.1}
pools: [10.65.0.0/16]
peers:
  - {address: 10.0.0.11, kind: client}
  - {address: 10.0.0.12, kind: client}
  - {address: 10.0.0.2, kind: nonclient}
"""


def make(text: str = NODE) -> Speaker:
    cfg = parse_config(text, "h1.yaml")
    reconciler = Reconciler(FakeKernel(), sources=("local", "bgp"))
    return Speaker(speaker_config(cfg), FibSink(reconciler, cfg.fib.table), Path("/nonexistent"))


def queued(speaker: Speaker) -> list[str]:
    return speaker.exabgp.pump.take_queued()


def test_local_routes_to_ibgp_and_aggregate_to_ebgp() -> None:
    speaker = make()
    speaker.refresh(speaker.cfg.pools)
    assert queued(speaker) == [
        "neighbor 10.1.1.0 announce attributes next-hop self origin igp nlri 10.65.0.0/16"
    ]
    speaker.set_local_prefixes([ip_network("10.65.1.1/32"), ip_network("fd00:65::1/128")])
    # each family over its own sessions; the eBGP peer only ever gets the aggregate
    assert queued(speaker) == [
        "neighbor 10.0.0.1 announce attributes next-hop self origin igp nlri 10.65.1.1/32",
        "neighbor fd00::1 announce attributes next-hop self origin igp nlri fd00:65::1/128",
    ]
    speaker.set_local_prefixes([])
    assert queued(speaker) == [
        "neighbor 10.0.0.1 withdraw attributes next-hop 0.0.0.0 nlri 10.65.1.1/32",
        "neighbor fd00::1 withdraw attributes next-hop :: nlri fd00:65::1/128",
    ]
    speaker.set_local_prefixes([])
    assert queued(speaker) == []


def test_routes_ebgp_export_and_split_horizon() -> None:
    speaker = make(NODE.replace(", export: aggregate", ""))
    rr = Peer(ip_address("10.0.0.1"), 64512, 64512, IPv4Address("10.0.0.1"))
    result = speaker.rib.update(
        rr, [(ip_network("10.65.2.1/32"), Attributes(next_hop=ip_address("10.0.0.12")))]
    )
    speaker.program(result.changes)
    # learned from our reflector: passed on to the eBGP ToR (next hop self), not back into iBGP
    assert queued(speaker) == [
        "neighbor 10.1.1.0 announce attributes next-hop self origin igp nlri 10.65.2.1/32"
    ]


def test_reflector_reflects_to_other_clients_with_attributes() -> None:
    rr = make(NODE_RR)
    h2 = Peer(ip_address("10.0.0.12"), 64512, 64512, IPv4Address("10.0.0.12"))
    result = rr.rib.update(h2, [(ip_network("10.65.2.1/32"), Attributes(next_hop=ip_address("10.0.0.12")))])
    rr.program(result.changes)
    attrs = (
        "origin igp local-preference 100 originator-id 10.0.0.12 cluster-list [ 10.0.0.254 ] "
        "nlri 10.65.2.1/32"
    )
    # the two clients get the same change: one command for both
    assert queued(rr) == [
        f"neighbor 10.0.0.11 , neighbor 10.0.0.2 announce attributes next-hop 10.0.0.12 {attrs}",
    ]
    assert rr.sink.reconciler.desired() == {}  # a reflector without workloads programs no FIB
    rr.program(rr.rib.peer_down(h2.address))  # client gone: withdrawn from every other peer
    assert queued(rr) == [
        "neighbor 10.0.0.11 , neighbor 10.0.0.2 withdraw attributes next-hop 0.0.0.0 nlri 10.65.2.1/32",
    ]


def test_each_peer_gets_its_own_changes_and_equal_ones_share_a_command() -> None:
    """Two clients' routes in one batch: neither gets its own back, the non-client gets both,
    and each announcement goes in one command to every peer that gets exactly it."""
    rr = make(NODE_RR)
    h1 = Peer(ip_address("10.0.0.11"), 64512, 64512, IPv4Address("10.0.0.11"))
    h2 = Peer(ip_address("10.0.0.12"), 64512, 64512, IPv4Address("10.0.0.12"))
    changes = rr.rib.update(h1, [(ip_network("10.65.1.0/26"), Attributes(next_hop=h1.address))]).changes
    changes |= rr.rib.update(h2, [(ip_network("10.65.2.0/26"), Attributes(next_hop=h2.address))]).changes
    rr.program(changes)
    tail = "origin igp local-preference 100 originator-id {0} cluster-list [ 10.0.0.254 ] nlri {1}"
    assert queued(rr) == [
        "neighbor 10.0.0.11 , neighbor 10.0.0.2 announce attributes next-hop 10.0.0.12 "
        + tail.format("10.0.0.12", "10.65.2.0/26"),
        "neighbor 10.0.0.12 , neighbor 10.0.0.2 announce attributes next-hop 10.0.0.11 "
        + tail.format("10.0.0.11", "10.65.1.0/26"),
    ]
    rr.program(rr.rib.peer_down(h1.address))
    assert queued(rr) == [
        "neighbor 10.0.0.12 , neighbor 10.0.0.2 withdraw attributes next-hop 0.0.0.0 nlri 10.65.1.0/26"
    ]
    rr.refresh(rr.every_prefix())
    assert queued(rr) == []  # each Adj-RIB-Out holds what was sent: nothing again


def test_a_neighbor_whose_export_mode_changes_is_planned_by_its_new_config() -> None:
    """Peers of a kind share what they are sent; one whose config changed is of another kind."""
    tor2 = "  - {address: 10.1.1.2, kind: ebgp, asn: 65002}\n"
    speaker = make(NODE.replace(", export: aggregate", "").replace("fib:", tor2 + "fib:"))
    rr = Peer(ip_address("10.0.0.1"), 64512, 64512, IPv4Address("10.0.0.1"))
    learned = ip_network("10.65.2.1/32")
    speaker.program(speaker.rib.update(rr, [(learned, Attributes(next_hop=ip_address("10.0.0.12")))]).changes)
    assert queued(speaker) == [
        f"neighbor 10.1.1.0 , neighbor 10.1.1.2 announce attributes next-hop self origin igp nlri {learned}"
    ]
    tor = speaker.neighbors[ip_address("10.1.1.0")]
    tor.config = dataclasses.replace(tor.config, export=ExportMode.AGGREGATE)  # as a reload does
    speaker.refresh(speaker.every_prefix())
    assert queued(speaker) == [
        f"neighbor 10.1.1.0 withdraw attributes next-hop 0.0.0.0 nlri {learned}",
        "neighbor 10.1.1.0 announce attributes next-hop self origin igp nlri 10.65.0.0/16",
    ]


REFLECTOR = """\
name: rr1
router_id: 10.0.0.1
asn: 64512
role: reflector
fabric: {interface: eth1, address: 10.0.0.1}
pools: [10.65.0.0/16]
peers:
  - {address: 10.0.0.11, kind: client}
  - {address: 10.0.0.12, kind: client}
"""


class NullWriter:
    """ExaBGP's end of the channel, for tests that only read."""

    def close(self) -> None: ...

    def is_closing(self) -> bool:
        return False


def exabgp_line(peer: str, body: str) -> bytes:
    head = '{ "exabgp": "5.0.0", "time": 1.0, "host": "vm", "pid": 1, "ppid": 1, "counter": 1, '
    neighbor = (
        f'"neighbor": {{ "address": {{ "local": "10.0.0.1", "peer": "{peer}" }}, '
        '"asn": { "local": 64512, "peer": 64512 }'
    )
    return (head + body.split("|")[0] + neighbor + body.split("|")[1] + " } }\n").encode()


async def test_end_of_rib_follows_the_announcements_it_vouches_for() -> None:
    """A restarting reflector's End-of-RIB to h2 must come after what h1's End-of-RIB completed:
    all in one chunk from ExaBGP, the announcements to h2 are queued first (h2 would otherwise
    sweep them as stale for the few ms in between)."""
    import asyncio

    from bgp.exabgp.process import Channel

    speaker = make(REFLECTOR)
    reader = asyncio.StreamReader()
    channel = Channel(reader, NullWriter())  # type: ignore[arg-type]
    speaker.exabgp.pump.attach(channel)
    speaker.set_local_ready()
    update = (
        '"type": "update", | , "direction": "receive", "message": { "update": { "attribute": '
        '{ "origin": "igp", "local-preference": 100 }, "announce": { "ipv4 unicast": '
        '{ "10.0.0.11": [ { "nlri": "10.65.1.1/32" } ] } } } }'
    )
    eor = '"type": "update", | , "direction": "receive", "message": { "eor": { "afi": "ipv4", "safi": "unicast" } }'
    reader.feed_data(
        exabgp_line("10.0.0.12", '"type": "state", | , "state": "up"')
        + exabgp_line("10.0.0.12", eor)
        + exabgp_line("10.0.0.11", '"type": "state", | , "state": "up"')
        + exabgp_line("10.0.0.11", update)
        + exabgp_line("10.0.0.11", eor)
    )
    reader.feed_eof()
    await speaker.exabgp.read(channel)
    to_h2 = [line for line in queued(speaker) if "10.0.0.12" in re.findall(r"neighbor (\S+)", line)]
    assert len(to_h2) == 2, to_h2
    assert to_h2[0].startswith("neighbor 10.0.0.12 announce attributes next-hop 10.0.0.11 ")
    assert to_h2[0].endswith(" nlri 10.65.1.1/32")
    assert to_h2[1].endswith(" announce eor ipv4 unicast"), to_h2  # one command for every peer due


async def test_after_a_power_event_a_reflector_waits_for_every_client() -> None:
    """Every daemon restarted at once: each client's OPEN has the Restart State bit. A client
    never waits for our End-of-RIB before sending its own, so the reflector must wait for
    theirs: an End-of-RIB to h2 before h1's routes are in would have h2 sweep the routes to
    h1 its kernel kept, and lose packets until they come back (the soak saw it)."""
    import asyncio

    from bgp.exabgp.process import Channel
    from bgp.model import GracefulRestartCapability

    speaker = make(REFLECTOR)
    for neighbor in speaker.neighbors.values():
        neighbor.graceful = GracefulRestartCapability(120, True, frozenset({4}))
    reader = asyncio.StreamReader()
    channel = Channel(reader, NullWriter())  # type: ignore[arg-type]
    speaker.exabgp.pump.attach(channel)
    speaker.set_local_ready()
    update = (
        '"type": "update", | , "direction": "receive", "message": { "update": { "attribute": '
        '{ "origin": "igp", "local-preference": 100 }, "announce": { "ipv4 unicast": '
        '{ "10.0.0.11": [ { "nlri": "10.65.1.0/26" } ] } } } }'
    )
    eor = '"type": "update", | , "direction": "receive", "message": { "eor": { "afi": "ipv4", "safi": "unicast" } }'
    reader.feed_data(
        exabgp_line("10.0.0.12", '"type": "state", | , "state": "up"')
        + exabgp_line("10.0.0.12", eor)
        + exabgp_line("10.0.0.11", '"type": "state", | , "state": "up"')
    )

    async def h1_catches_up() -> None:
        await asyncio.sleep(0.05)  # a batch of its own, as when h1's daemon is a little slower
        reader.feed_data(exabgp_line("10.0.0.11", update) + exabgp_line("10.0.0.11", eor))
        reader.feed_eof()

    late = asyncio.create_task(h1_catches_up())
    await speaker.exabgp.read(channel)
    await late
    to_h2 = [line for line in queued(speaker) if line.startswith("neighbor 10.0.0.12 ")]
    assert [line.split(" nlri ")[-1] if " nlri " in line else line for line in to_h2] == [
        "10.65.1.0/26",
        "neighbor 10.0.0.12 announce eor ipv4 unicast",
    ]


def test_a_block_we_take_refuses_what_others_announced_inside_it() -> None:
    speaker = make(NODE.replace(", export: aggregate", ""))
    rr = Peer(ip_address("10.0.0.1"), 64512, 64512, IPv4Address("10.0.0.1"))
    inside = ip_network("10.65.1.9/32")
    hijack = Attributes(next_hop=ip_address("10.0.0.12"), originator_id=IPv4Address("10.0.0.12"))
    speaker.reports.merge({}, speaker.rib.update(rr, [(inside, hijack)]), speaker.neighbors)
    assert speaker.rib.selection(inside) is not None  # nobody's block yet: accepted
    speaker.set_local_prefixes([ip_network("10.65.1.0/26")])
    assert speaker.rib.selection(inside) is None  # ours now: refused, and reported
    conflicts = speaker.status()["conflicts"]
    assert conflicts["current"] == 1 and conflicts["list"][0]["nodes"] == ["h1 (this node)", "10.0.0.12"]
    assert speaker.block_owner(ip_address("10.65.2.1")) is None
    block = Attributes(next_hop=ip_address("10.0.0.12"), originator_id=IPv4Address("10.0.0.12"))
    speaker.reports.merge(
        {}, speaker.rib.update(rr, [(ip_network("10.65.2.0/26"), block)]), speaker.neighbors
    )
    assert speaker.block_owner(ip_address("10.65.2.1")) == (ip_network("10.65.2.0/26"), "10.0.0.12")
    speaker.rib.update(rr, withdrawn=[inside])
    assert speaker.status()["conflicts"]["current"] == 0  # gone once the route is


V6_ONLY = """\
name: h1
router_id: 10.0.0.11
asn: 64512
fabric: {interface: eth1, address: "fd00::11"}
pools: [10.65.0.0/16, fd00:65::/48]
peers:
  - {address: "fd00::1", kind: reflector}
"""


def test_an_ipv6_only_fabric_carries_ipv4_over_its_ipv6_sessions() -> None:
    """RFC 8950: no IPv4 session, so the IPv4 /32 goes to the IPv6 reflector with our IPv6 address
    as its next hop (written out: ExaBGP's "self" would be the router id), and ExaBGP is told to
    negotiate the extended next hop capability."""
    speaker = make(V6_ONLY)
    (neighbor,) = speaker.cfg.neighbors
    assert neighbor.extended_next_hop and str(neighbor.local_address) == "fd00::11"
    speaker.set_local_prefixes([ip_network("10.65.1.1/32"), ip_network("fd00:65::1/128")])
    assert queued(speaker) == [
        "neighbor fd00::1 announce attributes next-hop fd00::11 origin igp nlri 10.65.1.1/32",
        "neighbor fd00::1 announce attributes next-hop self origin igp nlri fd00:65::1/128",
    ]
    rendered = render_config(speaker.cfg, "/bin/true")
    assert "local-address fd00::11;" in rendered
    assert "nexthop enable;" in rendered and "ipv4 unicast ipv6;" in rendered
    assert render_environment(speaker.cfg)["exabgp.tcp.bind"] == "fd00::11"
    # a dual-stack node keeps IPv4 on its IPv4 sessions: no extended next hop anywhere
    dual = make(NODE)
    assert not any(n.extended_next_hop for n in dual.cfg.neighbors)
    assert render_environment(dual.cfg)["exabgp.tcp.bind"] == "10.0.0.11 fd00::11"
    assert "nexthop" not in render_config(dual.cfg, "/bin/true")
