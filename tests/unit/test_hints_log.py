"""bgp.hints.log_hints: a line per session with a new hint, and a summary past ten at once
(a reflector of a thousand clients starting logged a thousand identical lines)."""

from __future__ import annotations

import logging
from ipaddress import ip_address
from types import SimpleNamespace

import pytest

from bgp.hints import LOGGED_ONE_BY_ONE, log_hints


def neighbor(i: int, hint: str = "not coming up: no answer from the peer") -> SimpleNamespace:
    return SimpleNamespace(
        address=ip_address(f"10.1.0.{i}"),
        clock=SimpleNamespace(time=lambda: 130.0),
        unestablished_since=100.0,
        config=SimpleNamespace(uses_md5=False),
        hint=hint,
    )


def test_a_few_sessions_each_get_their_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bgp.speaker"):
        log_hints([neighbor(i) for i in range(1, 4)])  # type: ignore[misc]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all("event=bgp_session_not_establishing" in line for line in lines)
    assert "peer=10.1.0.2" in lines[1] and "down_s=30" in lines[1]


def test_hundreds_at_once_are_summed_up_per_hint(caplog: pytest.LogCaptureFixture) -> None:
    many = [neighbor(i) for i in range(1, 201)] + [neighbor(201, "md5 trouble"), neighbor(202, "md5 trouble")]
    with caplog.at_level(logging.WARNING, logger="bgp.speaker"):
        log_hints(many)  # type: ignore[arg-type]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == LOGGED_ONE_BY_ONE + 2
    summary = [line for line in lines if "event=bgp_sessions_not_establishing" in line]
    assert (
        "count=190" in summary[0]
        and "peers=10.1.0.11,10.1.0.12,10.1.0.13,10.1.0.14,10.1.0.15,..." in summary[0]
    )
    assert "count=2" in summary[1] and "md5 trouble" in summary[1]
