"""bgp.export plans a one-prefix change (a reflector's everyday case) on a path of its own;
it plans, and records in each Adj-RIB-Out, what the general path does."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bgp import export
from bgp.model import Attributes, Peer
from bgp.prefixes import parse
from tests.unit.test_speaker_exports import NODE_RR, make

# a reflector with clients, a non-client and two eBGP peers, one of them sent the aggregate
NODE = NODE_RR + (
    "  - {address: 10.0.0.13, kind: client}\n"
    "  - {address: 10.1.1.0, kind: ebgp, asn: 65001, export: aggregate}\n"
    "  - {address: 10.1.1.2, kind: ebgp, asn: 65002}\n"
    "fib: {install_learned: true}\n"
)
SOURCES = ["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.2", "10.1.1.2"]
PREFIXES = ["10.65.1.0/26", "10.65.2.0/26", "10.65.2.1/32", "10.99.0.0/24"]
STEPS = st.lists(
    st.tuples(st.sampled_from(SOURCES), st.sampled_from(PREFIXES), st.booleans(), st.booleans()),
    min_size=1,
    max_size=12,
)


def planned(plan: export.ExportPlan) -> tuple[Any, ...]:
    return (list(plan.announces.items()), list(plan.withdraws.items()))


@settings(max_examples=150, deadline=None)
@given(STEPS)
def test_the_one_prefix_path_plans_what_the_general_path_plans(
    steps: list[tuple[str, str, bool, bool]],
) -> None:
    rr = make(NODE)
    for source, text, announce, withdrawing in steps:
        address = ip_address(source)
        peer = Peer(address, 64512 if source.startswith("10.0.") else 65002, 64512, IPv4Address(source))
        prefix = parse(text)
        if announce:
            rr.rib.update(peer, [(prefix, Attributes(next_hop=address, med=len(steps)))])
        else:
            rr.rib.update(peer, [], [prefix])
        targets = [n for n in rr.neighbors.values() if not n.pending]
        before = {n.address: dict(n.adj_rib_out) for n in targets}
        wanting = export.wanting_for(rr.me, rr.local, rr.rib, rr.neighbors, withdrawing)
        general = planned(export._refresh_many(targets, [prefix], wanting))
        after_general = {n.address: dict(n.adj_rib_out) for n in targets}
        for n in targets:
            n.adj_rib_out.clear()
            n.adj_rib_out.update(before[n.address])
        one = planned(export._refresh_one(targets, prefix, wanting))
        assert one == general
        assert {n.address: dict(n.adj_rib_out) for n in targets} == after_general
