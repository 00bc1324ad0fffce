"""A lab written by `routed lab generate` comes up as written: every host's workload reaches every
other host's through the reflector pair (issue 30's 200-host lab starts from the same command)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

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
