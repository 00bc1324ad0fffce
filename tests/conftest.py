"""Hooks for the whole suite (loaded by pytest-xdist's controller as well as its workers)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

TIMELINE = "ROUTED_TEST_TIMELINE"


def pytest_configure(config: pytest.Config) -> None:
    # one file for the whole run, workers included (they inherit the environment): which tests
    # ran while a lab test failed is part of its failure report (tests/lab.py print_logs)
    if not hasattr(config, "workerinput"):
        os.environ[TIMELINE] = f"/tmp/rt-timeline-{uuid.uuid4().hex[:8]}.log"


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and TIMELINE in os.environ:
        Path(os.environ.pop(TIMELINE)).unlink(missing_ok=True)


def _timeline(nodeid: str, what: str) -> None:
    if path := os.environ.get(TIMELINE):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(path, "a") as handle:
            handle.write(f"{time.time():.3f} {worker} {what} {nodeid}\n")


def pytest_runtest_logstart(nodeid: str) -> None:
    _timeline(nodeid, "start")


def pytest_runtest_logfinish(nodeid: str) -> None:
    _timeline(nodeid, "end")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests are chosen by marker (`-m "not root"`: the unit tests), not by path. The long ones
    run first (a stable sort: the rest keep their order), so that with `pytest -n` no worker
    picks up a two-minute test when the others are nearly done."""

    def seconds(item: pytest.Item) -> float:
        long = item.get_closest_marker("long")
        return float(long.args[0]) if long is not None and long.args else 0.0

    items.sort(key=lambda item: -seconds(item))
    if os.geteuid() == 0:
        return
    needs_root = [item for item in items if item.get_closest_marker("root") is not None]
    # CI runs as root and sets ROUTED_REQUIRE_ROOT so that these tests can never be skipped there.
    if needs_root and os.environ.get("ROUTED_REQUIRE_ROOT"):
        raise pytest.UsageError("ROUTED_REQUIRE_ROOT is set but the tests are not running as root")
    skip = pytest.mark.skip(reason="needs root for network namespaces")
    for item in needs_root:
        item.add_marker(skip)
