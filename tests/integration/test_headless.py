"""Headless operation, from labs: every reflector gone and the fabric keeps forwarding.

dual-rr (two reflectors, four hosts, one container each) under ping streams from every
host, every packet counted; the ground truth of every host's routes checked with
bench.truth afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import truth
from routed.lab.topology import load_topology
from tests.lab import Lab, lab_variant, running_lab
from tests.netns import wait_until
from tests.support.fabric import HEADLESS_HOSTS as HOSTS
from tests.support.fabric import RING, all_settled, daemon_pid, kernel_routes, ping, route_to, settled, status
from tests.traffic import PingStream, kill_and_wait, lost, total_lost

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

NODES = ["rr1", "rr2", *HOSTS]
ROOT = Path(__file__).resolve().parents[2]


def differences(lab: Lab) -> list[str]:
    topo = load_topology(lab.file, name=lab.name, prefix=lab.prefix)
    return [str(d) for d in truth.check(topo).differences]


def dual_rr_ready(lab: Lab) -> None:
    wait_until(lambda: differences(lab), [], timeout=40, what="dual-rr converged (truth check)")
    wait_until(lambda: settled(lab, NODES), all_settled(NODES), timeout=30, what="all sessions up")
    for src, dst in RING:
        wait_until(lambda s=src, d=dst: ping(lab, s, "web", HOSTS[d]), timeout=10, what=f"{src} -> {dst}")


def ring_streams(lab: Lab, seconds: float) -> list[PingStream]:
    return [PingStream(lab, src, "web", HOSTS[dst], seconds).start() for src, dst in RING]


# How long both reflectors stay away: past their restart time (20 s) and into long-lived stale
# is what the suite needs; issue 12's two minutes run as a command, with its figure in
# docs/benchmarks.md: ROUTED_HEADLESS_SECONDS=125 pytest tests/integration/test_headless.py -k gone
HEADLESS_S = float(os.environ.get("ROUTED_HEADLESS_SECONDS", "50"))


@pytest.mark.long(60 + HEADLESS_S)
def test_both_reflectors_gone_loses_no_packet() -> None:
    restart_time = 20
    # the reflectors' restart time is short, so long-lived stale takes over within the test; h4's
    # too: restarted while headless, it must keep the routes its previous run left in the kernel
    # past that time, for want of any reflector to learn from
    appended = {
        f"{node}.yaml": f"bgp: {{graceful_restart: {{restart_time: {restart_time}}}}}"
        for node in ("rr1", "rr2", "h4")
    }
    with lab_variant("dual-rr", appended) as topology, running_lab(topology) as lab:
        dual_rr_ready(lab)
        lab.exec("h1", "ip", "netns", "add", "old")
        lab.exec("h1", "routed", "workload", "add", "old", "--netns", "old", "--ip", "10.65.1.66")
        wait_until(lambda: kernel_routes(lab, "h3").get("10.65.1.66"), "10.0.0.11", timeout=10)
        running = ring_streams(lab, HEADLESS_S + 15)
        time.sleep(5)
        for rr in ("rr1", "rr2"):
            kill_and_wait(daemon_pid(lab, rr), signal.SIGKILL)
        wait_until(lambda: status(lab, "h2")["bgp"]["headless_since"] is not None, True, timeout=10)
        # headless: local changes apply to the local kernel at once and wait for a reflector
        lab.exec("h1", "routed", "workload", "del", "old")
        lab.exec("h1", "ip", "netns", "add", "new")
        lab.exec("h1", "routed", "workload", "add", "new", "--netns", "new", "--ip", "10.65.1.77")
        assert kernel_routes(lab, "h1")["10.65.1.77"].startswith("rt")
        kill_and_wait(daemon_pid(lab, "h4"), signal.SIGKILL)
        time.sleep(1)
        lab.start("h4")
        # past the reflectors' restart time their routes are long-lived stale, still forwarding
        wait_until(
            lambda: {p["graceful_restart"]["timer"] for p in status(lab, "h3")["bgp"]["peers"]},
            {"long-lived stale time"},
            timeout=restart_time + 15,
        )
        assert "HEADLESS since" in lab.exec("h3", "routed", "status").stdout
        assert route_to(lab, "h3", "10.65.1.1") == "10.0.0.11"
        wait_until(lambda: "event=bgp_ready_deferred" in lab.log("h4"), timeout=restart_time + 15)
        assert route_to(lab, "h4", "10.65.1.1") == "10.0.0.11"  # kept: no reflector to say otherwise
        time.sleep(max(0.0, HEADLESS_S - (time.monotonic() - running[0].started)))  # still no reflector
        lab.start("rr1")
        # within seconds of one reflector coming back, the new workload is everywhere
        for node in ("h2", "h3", "h4"):
            wait_until(lambda n=node: kernel_routes(lab, n).get("10.65.1.77"), "10.0.0.11", timeout=30)
        wait_until(lambda: ping(lab, "h3", "web", "10.65.1.77"), timeout=10)
        counts = lost(running)
        assert total_lost(counts) == 0, counts
        lab.start("rr2")
        wait_until(lambda: settled(lab, NODES), all_settled(NODES), timeout=40, what="no stale left")
        assert differences(lab) == []  # 10.65.1.66 is gone everywhere, 10.65.1.77 is everywhere
        assert "event=bgp_headless_over" in lab.log("h2")


@pytest.mark.long(70)
def test_reflector_restarts_lose_no_packet() -> None:
    with running_lab("dual-rr") as lab:
        dual_rr_ready(lab)
        # one of the two restarted
        running = ring_streams(lab, 8)
        time.sleep(2)
        kill_and_wait(daemon_pid(lab, "rr1"), signal.SIGTERM)
        time.sleep(2)
        lab.start("rr1")
        counts = lost(running)
        assert total_lost(counts) == 0, ("rr1 restarted", counts)
        wait_until(lambda: settled(lab, NODES), all_settled(NODES), timeout=40, what="no stale left")
        # consecutive: rr1 restarted and, before its End-of-RIB, rr2 too
        running = ring_streams(lab, 12)
        time.sleep(2)
        runs = lab.log("rr1").count("event=exabgp_started")
        kill_and_wait(daemon_pid(lab, "rr1"), signal.SIGKILL)
        time.sleep(1)
        lab.start("rr1")
        # before rr1 has sent its End-of-RIB, rr2 goes too
        wait_until(lambda: lab.log("rr1").count("event=exabgp_started"), runs + 1, timeout=10)
        assert "event=bgp_end_of_rib_sent" not in lab.log("rr1").rsplit("event=exabgp_started", 1)[1]
        kill_and_wait(daemon_pid(lab, "rr2"), signal.SIGKILL)
        time.sleep(1)
        lab.start("rr2")
        counts = lost(running)
        assert total_lost(counts) == 0, ("consecutive", counts)
        wait_until(lambda: settled(lab, NODES), all_settled(NODES), timeout=40, what="no stale left")
        assert differences(lab) == []


@pytest.mark.long(100)
def test_short_soak(tmp_path: Path) -> None:
    """The randomized soak, short: every event kind once (a power event among them,
    its recovery time printed), truth checked at checkpoints, every lost packet explained."""
    env = dict(os.environ, ROUTED_BENCH_RESULTS=str(tmp_path))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.soak",
            "--minutes",
            "3",
            "--count",
            "7",  # the seven kinds, once each
            "--seed",
            "7",
            "--cover",
            "--checkpoint-every",
            "4",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = json.loads((tmp_path / "soak.json").read_text())
    print(f"power event recovered in {summary['power_recovered_s']} s; packets {summary['packets']}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert set(summary["by_kind"]) == {
        "workload-add",
        "workload-del",
        "host-restart",
        "exabgp-kill",
        "rr-restart",
        "link-flap",
        "power",
    }
    assert summary["differences"] == 0 and summary["unexplained_lost"] == 0
    assert all(s is not None for s in summary["power_recovered_s"])
    # only a link flap may cost packets, and only on streams of the flapped host
    flapped = {e["host"] for e in summary["event_log"] if e["event"] == "link-flap"}
    for stream, counts in summary["packets"].items():
        if not flapped & set(stream.split("->")):
            assert counts["lost"] == 0, (stream, counts)
