"""`routed lab generate`: the topology and configs it writes are valid, consistent across nodes,
and sized as asked. Pure (tests/integration/test_lab_generate.py brings one up)."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from routed.config import parse_config
from routed.config.fabric import CheckedFile, fabric_problems
from routed.lab.generate import GenerateError, LabPlan, generate
from routed.lab.topology import load_topology


def write(tmp_path: Path, plan: LabPlan) -> Path:
    for relative, text in generate(plan).items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    return tmp_path / f"{plan.name}.clab.yml"


def test_a_generated_lab_loads_and_its_configs_agree(tmp_path: Path) -> None:
    plan = LabPlan("g", hosts=300, reflectors=2, workloads=3)
    topo = load_topology(write(tmp_path, plan))
    assert sorted(n.name for n in topo.nodes) == sorted(
        ["sw", "rr1", "rr2", *(f"h{i}" for i in range(1, 301))]
    )
    assert len(topo.links) == 302
    files = [
        CheckedFile(path.name, text := path.read_text(), parse_config(text, path.name))
        for path in sorted((tmp_path / "g").glob("*.yaml"))
    ]
    assert fabric_problems(files) == []  # no block twice, one block size
    configs = {f.cfg.name: f.cfg for f in files}
    h300, rr2 = configs["h300"], configs["rr2"]
    assert str(h300.fabric.address) == "10.0.2.50"  # 250 hosts to a /24, from 10.0.1.1
    assert [str(b) for b in h300.ipam.blocks] == ["10.65.74.192/26"]
    assert [str(p.address) for p in h300.listed_peers] == ["10.0.0.1", "10.0.0.2"]
    assert str(rr2.cluster_id) == "10.0.0.254"
    # rr1 listed, the hosts accepted from the fabric's range
    assert [str(p.address) for p in rr2.listed_peers] == ["10.0.0.1"]
    assert [str(r.range) for r in rr2.peer_ranges] == ["10.0.0.0/16"]
    assert topo.node("h7").exec is not None and "routed workload add h7-w3 --netns w3" in topo.node("h7").exec


def test_reflectors_can_list_every_client_instead(tmp_path: Path) -> None:
    files = generate(LabPlan("g", hosts=30, reflectors=2, clients="list"))
    rr1 = parse_config(files["g/rr1.yaml"], "rr1.yaml")
    assert len(rr1.listed_peers) == 31 and not rr1.peer_ranges  # 30 clients and rr2


def test_racks_behind_tors_under_a_spine(tmp_path: Path) -> None:
    plan = LabPlan("r", hosts=200, reflectors=0, tors=8, workloads=1)
    topo = load_topology(write(tmp_path, plan))
    names = {n.name for n in topo.nodes}
    assert names == {"spine", *(f"tor{r}" for r in range(1, 9)), *(f"h{h}" for h in range(1, 201))}
    assert len(topo.links) == 200 + 8  # a /31 per host, one per ToR to the spine
    files = [
        CheckedFile(path.name, text := path.read_text(), parse_config(text, path.name))
        for path in sorted((tmp_path / "r").glob("*.yaml"))
    ]
    assert fabric_problems(files) == []
    configs = {f.cfg.name: f.cfg for f in files}
    # 25 hosts a rack; h26 is the first of rack 2, on its /31 with tor2, from its own AS
    h26 = configs["h26"]
    assert str(h26.fabric.address) == "10.1.0.51" and h26.asn == 4200000026
    [tor] = h26.listed_peers
    assert (str(tor.address), tor.kind.value, tor.asn, tor.description) == (
        "10.1.0.50",
        "ebgp",
        65002,
        "tor2",
    )
    tor2 = (tmp_path / "r" / "tor2.conf").read_text()
    assert "neighbor 10.1.0.51 as 4200000026;" in tor2 and "neighbor 10.0.255.2 as 65000;" in tor2
    assert tor2.count("protocol bgp ") == 25 + 1 and "local as 65002;" in tor2
    assert "10.65.0.0/16+" in tor2  # only the pool travels
    spine = (tmp_path / "r" / "spine.conf").read_text()
    assert spine.count("protocol bgp ") == 8 and "neighbor 10.0.255.15 as 65008;" in spine
    assert dict(topo.node("tor2").env) == {"NODE_DAEMON": "bird"}
    assert "ip addr add 10.0.255.3/31 dev eth26" in (topo.node("tor2").exec or [])
    # one ToR: no spine
    assert "r/spine.conf" not in generate(LabPlan("r", hosts=3, reflectors=0, tors=1))


@pytest.mark.parametrize(
    ("plan", "needle"),
    [
        (LabPlan("g", hosts=0), "at least 1 host"),
        (LabPlan("g", hosts=2, reflectors=10), "1-9 reflectors"),
        (LabPlan("g", hosts=1100), "one L2 fabric takes at most"),
        (LabPlan("g", hosts=5, pool=IPv4Network("10.65.0.0/24"), block_size=26), "has 4 blocks"),
        (LabPlan("g", hosts=1, workloads=100), "do not fit a /26 block"),
        (LabPlan("g", hosts=1, block_size=12), "must be within the pool"),
        (LabPlan("g", hosts=1, clients="some"), "use range or list"),
        (LabPlan("g", hosts=4, reflectors=2, tors=2), "give 0 reflectors"),
        (LabPlan("g", hosts=2, reflectors=0, tors=3), "no more than there are hosts"),
        (LabPlan("g", hosts=2, reflectors=0), "1-9 reflectors"),
    ],
)
def test_impossible_labs_are_refused_saying_what_to_change(plan: LabPlan, needle: str) -> None:
    with pytest.raises(GenerateError, match=needle):
        generate(plan)
