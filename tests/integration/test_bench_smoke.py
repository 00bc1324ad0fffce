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

ROOT = Path(__file__).resolve().parents[2]


def run_bench(module: str, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ROUTED_BENCH_RESULTS=str(tmp))
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.parametrize("receiver", ["routed", "bird"])
def test_bulk_smoke(receiver: str, tmp_path: Path) -> None:
    run_bench("bench.bulk", "--receivers", receiver, "--sizes", "200", "--timeout", "60", tmp=tmp_path)
    (result,) = json.loads((tmp_path / "bulk.json").read_text())["results"]
    assert result["receiver"] == receiver and result["n"] == 200
    assert result["install_s"] is not None and result["withdraw_s"] is not None
    assert sum(result["rss_kb"].values()) > 0
