"""routed's BFD process between two namespaces: sessions come up (slow start, then 50 ms),
a frozen peer is declared down by detection time, and comes back up when it thaws."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.integration.conftest import Namespaces, sh


@contextmanager
def bfd_process(netns: str, control: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "routed.bfd.process", "--control", str(control)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not control.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the BFD process did not start"
            time.sleep(0.05)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class Control:
    """The daemon's side of the control socket, as a test sees it."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.stream = self.sock.makefile("rb")

    def configure(self, peer: str, local: str, interval_ms: int = 50, multiplier: int = 3) -> dict[str, Any]:
        session = {"peer": peer, "local": local, "interval_ms": interval_ms, "multiplier": multiplier}
        self.sock.sendall(json.dumps({"op": "configure", "sessions": [session]}).encode() + b"\n")
        while True:
            message = json.loads(self.stream.readline())
            if "event" not in message:
                return dict(message)

    def wait_state(self, state: str, timeout: float) -> dict[str, Any]:
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.stream.readline())
            if message.get("event") == "state" and message["state"] == state:
                return dict(message)
        raise AssertionError(f"no {state} within {timeout}s")


def test_bfd_up_frozen_peer_down_and_back(namespaces: Namespaces, tmp_path: Path) -> None:
    a, b = namespaces.add(), namespaces.add()
    sh(["ip", "-n", a, "link", "add", "bfd0", "type", "veth", "peer", "name", "bfd0", "netns", b])
    for ns, address in ((a, "10.0.0.1"), (b, "10.0.0.2")):
        sh(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "bfd0"])
        sh(["ip", "-n", ns, "link", "set", "bfd0", "up"])
    with bfd_process(a, tmp_path / "a.sock"), bfd_process(b, tmp_path / "b.sock") as frozen:
        ctl_a, ctl_b = Control(tmp_path / "a.sock"), Control(tmp_path / "b.sock")
        assert ctl_a.configure("10.0.0.2", "10.0.0.1")["sessions"][0]["state"] == "down"
        ctl_b.configure("10.0.0.1", "10.0.0.2")
        ctl_a.wait_state("up", timeout=10)
        ctl_b.wait_state("up", timeout=10)
        # configuring the same again (a restarted daemon) leaves the running session alone
        assert ctl_a.configure("10.0.0.2", "10.0.0.1")["sessions"][0]["state"] == "up"
        time.sleep(1)  # past the poll sequence: both at 50 ms
        os.killpg(frozen.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            down = ctl_a.wait_state("down", timeout=5)
            print(f"detected in {(time.monotonic() - stopped) * 1000:.0f} ms")
            assert down["diag"] == "detection_time_expired", down
        finally:
            os.killpg(frozen.pid, signal.SIGCONT)
        ctl_a.wait_state("up", timeout=10)
