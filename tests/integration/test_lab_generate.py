"""A lab written by `routed lab generate` comes up as written: every host's workload reaches every
other host's through the reflector pair (issue 30's 200-host lab starts from the same command)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bench import truth
from tests.lab import generate_lab, running_lab
from tests.netns import wait_until
from tests.traffic import ping_from

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

HOSTS = 4


def test_a_generated_lab_comes_up_and_its_workloads_reach_each_other(tmp_path: Path) -> None:
    topology = generate_lab(tmp_path, "gen", "--hosts", str(HOSTS), "--reflectors", "2", "--workloads", "1")
    with running_lab(topology) as lab:
        first = {f"h{i}": f"10.65.0.{(i - 1) * 64 + 1}" for i in range(1, HOSTS + 1)}  # w1 of each block
        for (node, _), (_, address) in itertools.permutations(first.items(), 2):
            wait_until(
                lambda node=node, address=address: ping_from(lab, node, "w1", "-c1", "-W1", address),
                1,
                timeout=60,
                what=f"{node}'s w1 reaches {address}",
            )


def test_a_generated_lab_of_racks_routes_through_its_tors(tmp_path: Path) -> None:
    # two racks of two hosts, each host eBGP to its ToR (BIRD2), the ToRs under a spine: every
    # workload reaches every other, and every host's kernel holds the truth, all via its ToR
    topology = generate_lab(tmp_path, "racks", "--hosts", str(HOSTS), "--tors", "2", "--workloads", "1")
    with running_lab(topology) as lab:
        first = {f"h{i}": f"10.65.0.{(i - 1) * 64 + 1}" for i in range(1, HOSTS + 1)}
        for (node, _), (_, address) in itertools.permutations(first.items(), 2):
            wait_until(
                lambda node=node, address=address: ping_from(lab, node, "w1", "-c1", "-W1", address),
                1,
                timeout=60,
                what=f"{node}'s w1 reaches {address}",
            )
        report = truth.check(lab.topology)
        assert report.hosts == HOSTS and [str(d) for d in report.differences] == []
        routes = lab.exec("h3", "ip", "route", "show", "10.65.0.0/26").stdout
        assert "via 10.1.0.4" in routes, routes  # h1's block, from rack 2: via h3's own ToR
