"""Operations, from the dual-rr lab: `routed status`, /metrics, /readyz, the Grafana dashboard,
and config reload (a peer added and removed under counted pings; bad files refused).

h1 starts with only rr1 as its peer, so a reload can add rr2 (which already lists h1 as a
client) and take it away again; its pools are narrower than the others', so it has routes to refuse.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.lab import Lab, lab_variant, running_lab
from tests.netns import wait_until
from tests.support.fabric import HEADLESS_HOSTS as HOSTS
from tests.support.fabric import RING, daemon_pid, kernel_routes, status
from tests.traffic import PingStream, kill_and_wait, lost, total_lost

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "routed-dashboard.json"
RR2_LINE = "  - {address: 10.0.0.2, kind: reflector}\n"


def http(lab: Lab, node: str, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:9180{path} inside the node, as curl would: (status, body)."""
    out = lab.exec(node, "curl", "-s", "-w", "\n%{http_code}", f"http://127.0.0.1:9180{path}", check=False)
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body


def metrics(lab: Lab, node: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, text = http(lab, node, "/metrics")
    assert code == 200, (code, text)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(lab: Lab, node: str, name: str, **labels: str) -> float | None:
    wanted = tuple(sorted(labels.items()))
    found = [v for (n, ls), v in metrics(lab, node).items() if n == name and set(wanted) <= set(ls)]
    return sum(found) if found else None


def peer_rows(text: str) -> dict[str, dict[str, str]]:
    """The peer table of `routed status`, by peer address."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("PEER "))
    header = lines[start].split()
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = dict(zip(header, cells, strict=False))
    return rows


def since(lab: Lab, node: str) -> dict[str, float]:
    return {p["address"]: p["since"] for p in status(lab, node)["bgp"]["peers"] if p["state"] == "up"}


def reload(lab: Lab, config: Path, text: str) -> Any:
    with open(config, "w") as handle:  # in place: the node sees the file through a bind mount
        handle.write(text)
    return lab.exec("h1", "routed", "reload", check=False)


@pytest.mark.long(95)
def test_status_metrics_readiness_and_reload_without_disruption() -> None:
    edits = {"dual-rr/h1.yaml": [(RR2_LINE, ""), ("pools: [10.65.0.0/16]", "pools: [10.65.0.0/17]")]}
    with lab_variant("dual-rr", {}, edits) as topology, running_lab(topology) as lab:
        config = topology.parent / "dual-rr" / "h1.yaml"
        original = config.read_text()
        wait_until(lambda: sorted(since(lab, "h1")), ["10.0.0.1"], timeout=40, what="h1 up with rr1 only")
        wait_until(lambda: kernel_routes(lab, "h1").get("10.65.4.0/26"), "10.0.0.14", timeout=30)

        # /readyz: not ready while h1 has no session and has not synced, ready after
        kill_and_wait(daemon_pid(lab, "rr1"), signal.SIGKILL)
        kill_and_wait(daemon_pid(lab, "h1"), signal.SIGTERM)
        lab.start("h1")
        wait_until(lambda: http(lab, "h1", "/readyz")[0], 503, timeout=20, what="h1's /readyz answers 503")
        checks = json.loads(http(lab, "h1", "/readyz")[1])["checks"]
        assert checks["bgp_session_up"] is False and checks["config_loaded"] is True, checks
        assert http(lab, "h1", "/healthz") == (200, "ok\n")
        lab.start("rr1")
        wait_until(lambda: http(lab, "h1", "/readyz")[0], 200, timeout=60, what="h1 ready once rr1 is back")
        wait_until(lambda: all(p["state"] == "up" for p in status(lab, "rr1")["bgp"]["peers"]), timeout=30)

        # h1's pools are narrower than the fabric's: h2's container at 10.65.200.5 is refused there
        lab.exec("h2", "ip", "netns", "add", "far")
        lab.exec("h2", "routed", "workload", "add", "far", "--netns", "far", "--ip", "10.65.200.5")
        rejected = {"peer": "10.0.0.1", "reason": "outside pools"}
        wait_until(
            lambda: metric(lab, "h1", "routed_bgp_prefixes_rejected_total", **rejected), 1.0, timeout=20
        )
        # and a workload of its own shows up in the counts
        added = metric(lab, "h1", "routed_fib_operations_total", operation="add") or 0
        lab.exec("h1", "ip", "netns", "add", "extra")
        lab.exec("h1", "routed", "workload", "add", "extra", "--netns", "extra")
        # (a scrape reads a status at most a second old: routed.metrics.STATUS_MAX_AGE)
        wait_until(
            lambda: (metric(lab, "h1", "routed_fib_operations_total", operation="add") or 0) > added,
            timeout=5,
            what="the new workload's route counted",
        )
        assert metric(lab, "h1", "routed_workloads") == 2
        assert metric(lab, "h1", "routed_fib_routes", origin="workload") == 2

        # the status table agrees with --json and with the kernel
        text = lab.exec("h1", "routed", "status").stdout
        shown = json.loads(lab.exec("h1", "routed", "status", "--json").stdout)
        row = peer_rows(text)["10.0.0.1"]
        rr1 = next(p for p in shown["bgp"]["peers"] if p["address"] == "10.0.0.1")
        assert row["STATE"] == "up" and row["KIND"] == "reflector"
        assert [row[k] for k in ("RECV", "ACC", "REJ", "SENT")] == [
            str(rr1[k]) for k in ("received", "accepted", "rejected", "announced")
        ]
        assert row["REJ"] == "1"
        in_kernel = len(kernel_routes(lab, "h1"))
        assert f"fib: {in_kernel} routes in the kernel" in text, (in_kernel, text)
        assert "headless no" in text and "router-id 10.0.0.11" in text

        # metrics follow a session flap
        assert metric(lab, "h1", "routed_bgp_session_up", peer="10.0.0.1") == 1
        flaps = metric(lab, "h1", "routed_bgp_session_flaps_total", peer="10.0.0.1")
        kill_and_wait(daemon_pid(lab, "rr1"), signal.SIGKILL)
        wait_until(lambda: metric(lab, "h1", "routed_bgp_session_up", peer="10.0.0.1"), 0.0, timeout=20)
        assert metric(lab, "h1", "routed_bgp_session_flaps_total", peer="10.0.0.1") == (flaps or 0) + 1
        lab.start("rr1")
        wait_until(lambda: metric(lab, "h1", "routed_bgp_session_up", peer="10.0.0.1"), 1.0, timeout=30)

        # every metric the Grafana dashboard draws exists in a live /metrics
        live = {name for name, _ in metrics(lab, "h1")}
        drawn = set(re.findall(r"routed_[a-z_]+", DASHBOARD.read_text()))
        assert drawn and drawn <= live, sorted(drawn - live)

        # reload: rr2 added under counted pings; no other session moves, no packet lost
        for node in ("h1", "h2", "rr1", "rr2"):  # every session that can be up is (rr2's with h1 cannot)
            wait_until(
                lambda n=node: all(
                    p["state"] == "up"
                    for p in status(lab, n)["bgp"]["peers"]
                    if p["address"] != "10.0.0.11" or n != "rr2"
                ),
                timeout=30,
                what=f"{node}'s sessions up",
            )
        before = {node: since(lab, node) for node in ("h1", "h2", "rr1", "rr2")}
        running = [PingStream(lab, src, "web", HOSTS[dst], 10).start() for src, dst in RING]
        time.sleep(2)
        rr1_line = "  - {address: 10.0.0.1, kind: reflector}\n"
        result = reload(lab, config, original.replace(rr1_line, rr1_line + RR2_LINE))
        assert result.returncode == 0 and "peers added: 10.0.0.2" in result.stdout, result
        wait_until(lambda: sorted(since(lab, "h1")), ["10.0.0.1", "10.0.0.2"], timeout=20, what="h1-rr2 up")
        wait_until(lambda: kernel_routes(lab, "h1").get("10.65.4.0/26"), "10.0.0.14", timeout=5)
        after = {node: since(lab, node) for node in ("h1", "h2", "rr1", "rr2")}
        after["h1"].pop("10.0.0.2")
        after["rr2"].pop("10.0.0.11")
        assert after == before, (before, after)
        assert total_lost(counts := lost(running)) == 0, counts
        assert "event=reload" in lab.log("h1") and "peers_added=10.0.0.2" in lab.log("h1")
        # the added peer was sent our routes: rr2 reflects h1's block to h2
        h1_rr2 = next(p for p in status(lab, "h1")["bgp"]["peers"] if p["address"] == "10.0.0.2")
        assert h1_rr2["announced"] > 0, h1_rr2
        wait_until(
            lambda: next(p for p in status(lab, "rr2")["bgp"]["peers"] if p["address"] == "10.0.0.11")[
                "accepted"
            ],
            h1_rr2["announced"],
            timeout=10,
        )

        # removed again: rr2 is told (Cease, de-configured) and drops h1's routes at once
        result = reload(lab, config, original)
        assert result.returncode == 0 and "peers removed" in result.stdout, result
        assert sorted(since(lab, "h1")) == ["10.0.0.1"]
        rr2_h1 = next(p for p in status(lab, "rr2")["bgp"]["peers"] if p["address"] == "10.0.0.11")
        assert rr2_h1["state"] != "up" and "6/3" in rr2_h1["last_error"], rr2_h1
        assert rr2_h1["graceful_restart"]["stale"] == 0 and rr2_h1["received"] == 0
        time.sleep(7)  # longer than ExaBGP's reconnect backoff: a de-configured peer stays away
        assert "10.0.0.11" not in since(lab, "rr2")

        # a broken file: FILE:LINE:COL, exit 2, the running config kept
        before = since(lab, "h1")
        result = reload(lab, config, original.replace("asn: 64512", "asn: [64512"))
        assert result.returncode == 2 and re.search(r"routed\.yaml:\d+:\d+: ", result.stderr), result
        assert "running config is kept" in result.stderr, result.stderr
        wait_until(lambda: "event=reload_refused" in lab.log("h1"), timeout=5)
        assert since(lab, "h1") == before
        # a change only a restart can make: refused, saying so
        result = reload(lab, config, original.replace("router_id: 10.0.0.11", "router_id: 10.0.0.99"))
        assert result.returncode == 2 and "router_id" in result.stderr and "restart" in result.stderr, result
        assert status(lab, "h1")["router_id"] == "10.0.0.11"

        # SIGHUP does what `routed reload` does: wider pools re-judge what rr1 sent, and a new
        # description, without resetting the session
        widened = original.replace("pools: [10.65.0.0/17]", "pools: [10.65.0.0/16]")
        with open(config, "w") as handle:
            handle.write(widened.replace("kind: reflector}", "kind: reflector, description: first}", 1))
        os.kill(daemon_pid(lab, "h1"), signal.SIGHUP)
        wait_until(lambda: kernel_routes(lab, "h1").get("10.65.200.5"), "10.0.0.12", timeout=10)
        rr1 = status(lab, "h1")["bgp"]["peers"][0]
        assert (rr1["description"], rr1["rejected"]) == ("first", 0), rr1
        assert since(lab, "h1") == before
        assert "routes_rejudged=True" in lab.log("h1")
