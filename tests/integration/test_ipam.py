"""IPAM blocks in labs: unique addresses by construction, one route per host, loud conflicts.

quickstart with static blocks (10.65.N.0/26 per host, as shipped); then a variant where
h1 and h2 claim their blocks from etcd running on rr1 while h3 stays on /32s (mode none),
the fabric mid-migration.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.lab import Lab, lab_variant, running_lab
from tests.netns import wait_until
from tests.support.etcd import ETCD_IPAM, ETCD_ON_RR1
from tests.support.fabric import kernel_routes, ping, route_to, status

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

BLOCKS = {"h1": "10.65.1.0/26", "h2": "10.65.2.0/26", "h3": "10.65.3.0/26"}
HOSTS = {"h1": "10.0.0.11", "h2": "10.0.0.12", "h3": "10.0.0.13"}


def add(lab: Lab, node: str, workload: str, *ip: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    lab.exec(node, "ip", "netns", "add", workload)
    argv = ["routed", "workload", "add", workload, "--netns", workload]
    for address in ip:
        argv += ["--ip", address]
    return lab.exec(node, *argv, check=check)


@pytest.mark.long(55)
def test_static_blocks_in_quickstart() -> None:
    with running_lab("quickstart") as lab:
        for node, block in BLOCKS.items():
            others = {b: HOSTS[n] for n, b in BLOCKS.items() if n != node}
            wait_until(
                lambda n=node, o=others: {k: v for k, v in kernel_routes(lab, n).items() if k in o},
                others,
                timeout=30,
                what=f"{node} routes the other blocks via their owners",
            )
            assert kernel_routes(lab, node)[block] == "unreachable"
        # one route per other host, not one per container: h3 holds no /32 of h1's or h2's
        wait_until(
            lambda: sorted(k for k in kernel_routes(lab, "h3") if not k.startswith("10.65.3.")),
            ["10.65.1.0/26", "10.65.2.0/26"],
        )
        updates = {p["address"]: p["updates"] for p in status(lab, "h3")["bgp"]["peers"]}
        # the same command on two hosts gives two addresses, each from its host's block
        add(lab, "h1", "auto1")
        add(lab, "h2", "auto2")
        listed = {
            n: {
                w["id"]: w["ips"]
                for w in json.loads(lab.exec(n, "routed", "workload", "list", "--json").stdout)
            }
            for n in ("h1", "h2")
        }
        assert listed["h1"]["auto1"] == ["10.65.1.3"] and listed["h2"]["auto2"] == ["10.65.2.3"]
        # a new container on h1 needs no BGP update at all: h3 reaches it through the block at once
        wait_until(lambda: ping(lab, "h3", "web1", "10.65.1.3"), timeout=10, what="h3 reaches auto1")
        assert {p["address"]: p["updates"] for p in status(lab, "h3")["bgp"]["peers"]} == updates
        # --ip inside another host's block is refused, naming the owner
        refused = add(lab, "h1", "dup", "10.65.2.1", check=False)
        assert refused.returncode == 2
        assert (
            "10.65.2.1 is inside block 10.65.2.0/26, which belongs to the node at 10.0.0.12" in refused.stderr
        )
        assert "dup" not in lab.exec("h1", "routed", "workload", "list").stdout
        # an unused address of a block is answered at once by its owner, not looped or timed out
        started = time.monotonic()
        unreachable = lab.exec(
            "h3", "ip", "netns", "exec", "web1", "ping", "-c1", "-W3", "10.65.1.40", check=False
        )
        assert unreachable.returncode != 0 and "Unreachable" in unreachable.stdout, unreachable.stdout
        assert "From 10.0.0.11" in unreachable.stdout
        assert time.monotonic() - started < 2.5  # the ICMP error, not ping's 3 s timeout
        # an address outside every block is announced as a /32 of its own
        add(lab, "h2", "outside", "10.65.77.7")
        wait_until(lambda: kernel_routes(lab, "h1").get("10.65.77.7"), "10.0.0.12", timeout=10)
        # a host down with its routes withdrawn while another takes one of its addresses: when
        # it comes back it names both nodes and the prefix, keeps its own, and counts it
        lab.exec("h2", "routed", "stop", "--withdraw")
        wait_until(lambda: route_to(lab, "h1", "10.65.2.1"), None, timeout=10, what="h2's block gone")
        add(lab, "h1", "taken", "10.65.2.9")  # nobody's block any more, as far as h1 can tell
        lab.start("h2")
        wait_until(lambda: "event=address_conflict" in lab.log("h2"), timeout=30, what="h2 reports it")
        line = next(x for x in lab.log("h2").splitlines() if "event=address_conflict" in x)
        assert "prefix=10.65.2.9/32" in line and "h2 (this node)" in line and "10.0.0.11" in line
        wait_until(lambda: status(lab, "h2")["bgp"]["conflicts"]["current"], 1, timeout=10)
        assert "ADDRESS CONFLICTS 1" in lab.exec("h2", "routed", "status").stdout
        assert route_to(lab, "h2", "10.65.2.9") == "unreachable"  # kept ours: not routed to h1
        assert lab.log("h2").count("event=address_conflict") == 1  # once
        # two hosts announcing one address: the reflector says so too
        add(lab, "h3", "twin", "10.65.77.7")
        wait_until(
            lambda: any(
                "event=address_conflict" in x and "10.65.77.7/32" in x and "10.0.0.12,10.0.0.13" in x
                for x in lab.log("rr1").splitlines()
            ),
            timeout=15,
            what="rr1 reports 10.65.77.7 from h2 and h3",
        )


def test_etcd_blocks_next_to_a_host_still_on_32s() -> None:
    edits = {
        "quickstart.clab.yml": [
            (
                "        - ip addr add 10.0.0.1/24 dev eth1\n",
                f"        - ip addr add 10.0.0.1/24 dev eth1\n        - {ETCD_ON_RR1}\n",
            ),
            (
                "routed workload add h3-web1 --netns web1",
                "routed workload add h3-web1 --netns web1 --ip 10.65.3.1",
            ),
            (
                "routed workload add h3-web2 --netns web2",
                "routed workload add h3-web2 --netns web2 --ip 10.65.3.2",
            ),
        ],
        "quickstart/h1.yaml": [("ipam: {mode: static, blocks: [10.65.1.0/26]}", ETCD_IPAM)],
        "quickstart/h2.yaml": [("ipam: {mode: static, blocks: [10.65.2.0/26]}", ETCD_IPAM)],
        "quickstart/h3.yaml": [("ipam: {mode: static, blocks: [10.65.3.0/26]}", "ipam: none")],
    }
    with lab_variant("quickstart", {}, edits) as topology, running_lab(topology) as lab:
        # h1 and h2 claimed the first two blocks of the pool in etcd, in the order they asked
        claimed = lab.exec(
            "rr1", "etcdctl", "--endpoints", "10.0.0.1:2379", "get", "--prefix", "/routed/ipam/v1/blocks/"
        ).stdout
        owners = {json.loads(v)["node"] for v in claimed.splitlines()[1::2]}
        assert owners == {"h1", "h2"}
        blocks = {
            n: json.loads(lab.exec(n, "routed", "ipam", "--json").stdout)["blocks"] for n in ("h1", "h2")
        }
        assert {b["block"] for n in blocks for b in blocks[n]} == {"10.65.0.0/26", "10.65.0.64/26"}
        ips = {
            n: sorted(
                ip
                for w in json.loads(lab.exec(n, "routed", "workload", "list", "--json").stdout)
                for ip in w["ips"]
            )
            for n in ("h1", "h2", "h3")
        }
        assert len({ip for v in ips.values() for ip in v}) == 6  # unique across the fabric
        first = {n: ips[n][0] for n in ips}
        # migration: h3 announces /32s, h1 and h2 blocks; longest match joins them
        for src, dst in (("h1", "h3"), ("h3", "h1"), ("h3", "h2"), ("h2", "h1")):
            wait_until(
                lambda s=src, d=dst: ping(lab, s, "web1", first[d]), timeout=30, what=f"{src} -> {dst}"
            )
        assert kernel_routes(lab, "h1")["10.65.3.1"] == "10.0.0.13"
        assert route_to(lab, "h3", first["h2"]) == "10.0.0.12"
        # etcd names the owner of a block to --ip
        owner_block = next(b["block"] for b in blocks["h1"])
        taken = owner_block.replace(".0/26", ".9").replace(".64/26", ".73")
        refused = add(lab, "h2", "dup", taken, check=False)
        assert refused.returncode == 2 and "which belongs to node h1 (etcd)" in refused.stderr, refused.stderr
        # every allocation is recorded in etcd with its workload as handle
        recorded = lab.exec(
            "rr1", "etcdctl", "--endpoints", "10.0.0.1:2379", "get", "--prefix", "/routed/ipam/v1/addresses/"
        ).stdout
        assert '"workload": "h1-web1"' in recorded
        # a deleted workload's address goes back; the block, once empty past release_after, too
        for workload in ("h2-web1", "h2-web2"):
            lab.exec("h2", "routed", "workload", "del", workload)
        wait_until(
            lambda: json.loads(lab.exec("h2", "routed", "ipam", "--json").stdout)["blocks"],
            [],
            timeout=30,
            what="h2's empty block released",
        )
        wait_until(lambda: route_to(lab, "h1", first["h2"]), None, timeout=10, what="h2's block withdrawn")
        assert "event=ipam_block_released" in lab.log("h2")
        left = lab.exec(
            "rr1", "etcdctl", "--endpoints", "10.0.0.1:2379", "get", "--prefix", "/routed/ipam/v1/"
        ).stdout
        assert '"node": "h2"' not in left
