"""Helpers for root tests: namespaces we create (and only those), commands, polling.

Everything a test makes is named `rt-<hex>` and is removed by the fixture that
made it, whatever happens in the test.
"""

from __future__ import annotations

import difflib
import json
import os
import pprint
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any


def unique(prefix: str = "rt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sh(
    cmd: list[str] | str, check: bool = True, netns: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    args = cmd.split() if isinstance(cmd, str) else list(cmd)
    if netns is not None:
        args = ["ip", "netns", "exec", netns, *args]
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def ip_json(netns: str, *args: str) -> Any:
    out = sh(["ip", "-j", "-n", netns, *args]).stdout
    return json.loads(out) if out.strip() else []


def wait_until(
    check: Callable[[], Any],
    expected: Any = True,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll `check()` until it returns `expected`; on timeout fail with a diff."""
    deadline = time.monotonic() + timeout
    actual = None
    while True:
        try:
            actual = check()
        except Exception as exc:  # a probe may fail while the state is still forming
            actual = exc
        if actual == expected:
            return actual
        if time.monotonic() > deadline:
            diff = "\n".join(
                difflib.unified_diff(
                    pprint.pformat(expected).splitlines(),
                    pprint.pformat(actual).splitlines(),
                    "expected",
                    "actual",
                    lineterm="",
                )
            )
            raise AssertionError(f"{what} did not hold within {timeout}s:\n{diff}")
        time.sleep(interval)


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def routes(netns: str, *extra: str, family: str = "-4") -> list[dict[str, Any]]:
    return ip_json(netns, family, "route", "show", *extra)  # type: ignore[no-any-return]


def links(netns: str) -> list[str]:
    return sorted(link["ifname"] for link in ip_json(netns, "link", "show"))
