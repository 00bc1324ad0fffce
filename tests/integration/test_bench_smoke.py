"""Each benchmark script runs end to end at a small size, so the scripts cannot rot.

Nothing here asserts a duration: timing targets live in bench/ and docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]


def run_bench(module: str, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ROUTED_BENCH_RESULTS=str(tmp))
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.parametrize("receiver", ["routed", "bird", "frr"])
def test_bulk_smoke(receiver: str, tmp_path: Path) -> None:
    run_bench("bench.bulk", "--receivers", receiver, "--sizes", "200", "--timeout", "60", tmp=tmp_path)
    (result,) = json.loads((tmp_path / "bulk.json").read_text())["results"]
    assert result["receiver"] == receiver and result["n"] == 200
    assert result["install_s"] is not None and result["withdraw_s"] is not None
    assert sum(result["rss_kb"].values()) > 0


def test_convergence_smoke(tmp_path: Path) -> None:
    run_bench("bench.convergence", "--trials", "2", tmp=tmp_path)
    results = {m["daemon"]: m for m in json.loads((tmp_path / "convergence.json").read_text())["results"]}
    assert set(results) == {"routed", "bird"}
    hops = {"add_reflector_ms", "add_hosts_ms"}  # from the capture on the reflector
    assert set(results["routed"]["summary"]) == {"add_a_to_b_ms", "add_api_to_b_ms", "del_api_to_b_ms"} | hops
    assert set(results["bird"]["summary"]) == {"add_a_to_b_ms", "del_a_to_b_ms"} | hops


def test_ipv6_convergence_and_dataplane_smoke(tmp_path: Path) -> None:
    run_bench("bench.convergence", "--daemons", "routed", "--family", "6", "--trials", "2", tmp=tmp_path)
    (routed6,) = json.loads((tmp_path / "convergence6.json").read_text())["results"]
    assert routed6["daemon"] == "routed6"
    assert {"add_a_to_b_ms", "add_api_to_b_ms", "del_api_to_b_ms"} <= set(routed6["summary"])
    run_bench(
        "bench.dataplane", "--family", "6", "--modes", "routed", "plain", "--seconds", "1", tmp=tmp_path
    )
    results = json.loads((tmp_path / "dataplane6.json").read_text())["results"]
    assert [r["mode"] for r in results] == ["routed", "plain"] and all(r["gbit_s"] > 0 for r in results)


def test_speaker_smoke() -> None:
    out = run_bench(
        "bench.speaker", "--count", "2000", "--runs", "1", "--role", "reflector", tmp=Path("/tmp")
    )
    assert "reflector 2000 install_s: median" in out.stdout and "withdraw_s" in out.stdout


def test_dataplane_and_plots_smoke(tmp_path: Path) -> None:
    run_bench("bench.dataplane", "--seconds", "1", tmp=tmp_path)
    results = json.loads((tmp_path / "dataplane.json").read_text())["results"]
    assert [r["mode"] for r in results] == ["routed", "plain", "vxlan"]
    assert all(r["gbit_s"] > 0 for r in results)
    run_bench("bench.bulk", "--receivers", "routed", "--sizes", "100", tmp=tmp_path)
    run_bench("bench.plots", tmp=tmp_path)
    for name in ("bulk", "dataplane"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_failover_smoke(tmp_path: Path) -> None:
    run_bench(
        "bench.failover", "--daemons", "routed", "bird", "--ways", "kill", "--trials", "1", tmp=tmp_path
    )
    results = json.loads((tmp_path / "failover.json").read_text())["results"]
    assert [(r["daemon"], r["death"], len(r["ms"])) for r in results] == [
        ("routed", "kill", 1),
        ("bird", "kill", 1),
    ]
    # a frozen host with BFD is noticed by BFD, not the 9 s hold timer: cheap enough for the suite
    # (the bound says which mechanism acted, not how fast: the benchmark measures that)
    daemons = ("routed-bfd", "bird-bfd")
    run_bench("bench.failover", "--daemons", *daemons, "--ways", "freeze", "--trials", "1", tmp=tmp_path)
    frozen = json.loads((tmp_path / "failover.json").read_text())["results"]
    assert [r["daemon"] for r in frozen] == list(daemons)
    assert all(0 < r["ms"][0] < 9000 for r in frozen), frozen
    run_bench("bench.plots", tmp=tmp_path)
    assert (tmp_path / "failover.png").stat().st_size > 1000


def test_restarts_smoke(tmp_path: Path) -> None:
    # routed's own restart events are the graceful-restart tests; here a generated lab of the
    # comparison must come up, converge and be counted (the generated FRR configs are checked
    # by tests/unit/test_labs_files.py)
    run_bench("bench.restarts", "--daemons", "bird", "--events", "host-kill", "--seconds", "4", tmp=tmp_path)
    results = json.loads((tmp_path / "restarts.json").read_text())["results"]
    assert [(r["daemon"], r["event"]) for r in results] == [("bird", "host-kill")]
    for result in results:
        assert result["sent"] == 3 * 4 * 20 and 0 <= result["lost"] <= result["sent"]
        assert len(result["streams"]) == 3


def test_blocks_and_cni_smoke(tmp_path: Path) -> None:
    run_bench("bench.blocks", "--containers", "3", "--trials", "1", "--modes", "blocks", tmp=tmp_path)
    (result,) = json.loads((tmp_path / "blocks.json").read_text())["results"]
    assert result["routes"]["h3"] == {"total": 7, "learned": 3, "own": 4}  # 3 blocks; 3 /32s + its block
    assert result["summary"]["updates_at_h3"]["max"] == 0  # a new container inside a block: no UPDATE
    run_bench("bench.cni", "--trials", "1", tmp=tmp_path)
    cni = json.loads((tmp_path / "cni.json").read_text())
    summary = cni["summary"]
    assert set(summary) == {"routed", "bridge", "routed DEL", "bridge DEL"}
    assert all(s["n"] == 1 for s in summary.values())
    # the daemon's own account of the ADD and the DEL, stage by stage
    assert {"attach", "fib", "total"} <= set(cni["daemon_stages"]["ADD"])
    assert {"detach", "total"} <= set(cni["daemon_stages"]["DEL"])


def test_docker_smoke(tmp_path: Path) -> None:
    run_bench("bench.docker", "--trials", "1", tmp=tmp_path)
    docker = json.loads((tmp_path / "docker.json").read_text())
    summary = docker["summary"]
    assert set(summary) == {"routed", "bridge", "user bridge"} and all(s["n"] == 1 for s in summary.values())
    assert {"CreateEndpoint", "CreateEndpoint.attach", "DeleteEndpoint.detach"} <= set(docker["daemon_calls"])


@pytest.mark.long(70)
def test_exabgp_receive_and_memory_smoke(tmp_path: Path) -> None:
    # also a check of bgp/exabgp/wire.py against real UPDATEs: BIRD2's, as ExaBGP forwards them
    run_bench("bench.exabgp_receive", "--count", "500", tmp=tmp_path)
    results = json.loads((tmp_path / "exabgp_receive.json").read_text())["results"]
    assert [(r["mode"], r["routes"]) for r in results] == [
        ("json", 500),
        ("packets", 500),
        ("packets-unparsed", 500),
        ("inprocess", 500),
        ("raw", 500),
    ]
    run_bench("bench.memory", "--sizes", "1000", tmp=tmp_path)
    (memory,) = json.loads((tmp_path / "memory.json").read_text())["results"]
    assert memory["n"] == 1000 and memory["rib_bytes_per_route"] > 0


def test_nft_smoke(tmp_path: Path) -> None:
    run_bench("bench.nft", "--workloads", "50", "--rounds", "1", tmp=tmp_path)
    result = json.loads((tmp_path / "nft.json").read_text())
    assert result["libnftables"]["make_ms"] > 0 and result["libnftables"]["list_ms"] > 0, result
    assert "make_ms" in result["nft_cli"], result


def test_stages_smoke(tmp_path: Path) -> None:
    # the stages run routed's real code into a real namespace; it asserts every route got in and out
    run_bench("bench.stages", "--count", "1000", tmp=tmp_path)
    result = json.loads((tmp_path / "stages.json").read_text())
    assert result["n"] == 1000
    for phase in ("install", "withdraw"):
        assert all(us > 0 for us in result[phase]["us_per_route"].values()), result[phase]
    assert not [
        line
        for line in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True
        ).stdout.splitlines()
        if line.startswith("rt-stages-")
    ]


def test_rrscale_smoke(tmp_path: Path) -> None:
    # 20 simulated clients against routed's reflector and BIRD2's: every session up, every
    # client holding every other's block, changes carried, and a graceful restart of each
    # reflector that withdraws and sweeps nothing (the same checks a full run's figures rest on)
    run_bench(
        "bench.rrscale", "--reflectors", "routed", "bird", "--sizes", "20", "--trials", "3",
        "--idle", "1", "--restart", "--timeout", "120", tmp=tmp_path,
    )  # fmt: skip
    results = json.loads((tmp_path / "rrscale.json").read_text())["results"]
    assert [(r["reflector"], r["clients"]) for r in results] == [("routed", 20), ("bird", 20)]
    for result in results:
        assert "failed" not in result, result
        assert result["full_table_s"] >= result["established_s"] > 0
        assert result["change_last_ms"]["p99"] >= result["change_last_ms"]["p50"] > 0
        assert result["rss_mb"] > 0
        restart = result["restart"]
        assert (restart["withdrawn"], restart["swept"], restart["full_tables"]) == (0, 0, True), result


def test_footprint_smoke(tmp_path: Path) -> None:
    # an idle host's processes and each import's cost are measured (the budget is a figure in
    # docs/benchmarks.md, not asserted here)
    run_bench("bench.footprint", "--idle", "1", tmp=tmp_path)
    data = json.loads((tmp_path / "footprint.json").read_text())
    commands = " ".join(p["command"] for p in data["host_processes"])
    assert "routed run" in commands and "bgp.exabgp.launch" in commands, commands
    assert data["host_rss_kb"] == sum(p["rss_kb"] for p in data["host_processes"]) > 0
    assert data["exabgp_imports"][0]["import"] == "interpreter"
    rows = data["daemon_imports"] + data["exabgp_imports"] + data["one_process_imports"]
    assert all(row["rss_kb"] > 0 for row in rows)
    # one process holding both costs more than the daemon alone, less than the two apart
    daemon, exabgp = data["daemon_imports"][-1]["rss_kb"], data["exabgp_imports"][-1]["rss_kb"]
    assert daemon < data["one_process_imports"][-1]["rss_kb"] < daemon + exabgp, rows


def test_labscale_smoke(tmp_path: Path) -> None:
    # a generated lab of 4 real hosts through every step of the 200-host run: truth, a new
    # container reached by all, a reflector restart and a mass restart under counted pings
    run_bench(
        "bench.labscale", "--hosts", "4", "--idle", "1", "--reflector-seconds", "15",
        "--mass-seconds", "25", "--timeout", "120", tmp=tmp_path,
    )  # fmt: skip
    data = json.loads((tmp_path / "labscale.json").read_text())
    assert data["new_container"]["hosts_reaching"] == 3 and data["new_container"]["unreached"] == []
    for event in ("reflector_restart", "mass_restart"):
        assert data[event]["sent"] > 0 and data[event]["lost"] == 0, data[event]
        assert data[event]["streams_outlasted_event"], data[event]
    assert data["idle"]["host_rss_mb"]["max"] > 0
