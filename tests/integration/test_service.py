"""routed under systemd: the shipped unit passes `systemd-analyze verify`, and the daemon speaks
the notify protocol (READY=1 once its FIB is synced, WATCHDOG=1 from its loop, STATUS= on reload)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ROUTED, Daemon, Host

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)


def verify(unit: Path) -> str:
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    return f"{result.stdout}{result.stderr}".strip() + (
        "" if result.returncode == 0 else f" (exit {result.returncode})"
    )


def test_the_unit_installs_and_verifies(tmp_path: Path, host: Host) -> None:
    units = tmp_path / "units"
    result = subprocess.run(
        [*ROUTED, "service", "install", "-c", str(host.config), "--unit-dir", str(units)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result
    unit = units / "routed.service"
    text = unit.read_text()
    assert "@ROUTED@" not in text and f"run -c {host.config}" in text
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
    ):
        assert line in text.splitlines(), line
    assert verify(unit) == ""
    # the check can fail: a broken copy is reported
    broken = tmp_path / "broken" / "routed.service"
    broken.parent.mkdir()
    broken.write_text(text.replace("Type=notify", "Type=notifyy"))
    assert "notifyy" in verify(broken)


def test_a_config_that_does_not_load_gets_no_unit(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: h1\n")
    result = subprocess.run(
        [*ROUTED, "service", "install", "-c", str(bad), "--unit-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "bad.yaml:1:1" in result.stderr, result
    assert not (tmp_path / "routed.service").exists()


def received(sock: socket.socket, wanted: str, timeout: float = 20) -> list[str]:
    """Datagrams until one carries `wanted`; all of them, in order."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(wanted in d.split("\n") for d in got):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError as exc:
            raise AssertionError(f"no {wanted} within {timeout}s; got {got}") from exc
    return got


def test_ready_and_watchdog_are_notified(tmp_path: Path, host: Host) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        daemon = Daemon(host)
        daemon.start(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
        try:
            got = received(sock, "READY=1")
            assert got[0].startswith("STATUS=restored"), got
            assert "STATUS=FIB synced" in got[-1].split("\n"), got
            received(sock, "WATCHDOG=1", timeout=5)
            host.routed("-h")  # the daemon keeps running through it all
            assert daemon.process is not None and daemon.process.poll() is None
            assert (
                'event=systemd_ready reason="FIB synced"' in daemon.text() or "systemd_ready" in daemon.text()
            )
        finally:
            daemon.stop()
