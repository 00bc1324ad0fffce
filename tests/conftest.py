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
