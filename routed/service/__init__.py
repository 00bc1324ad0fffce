"""routed under systemd: the unit file it ships, and the notify protocol (READY, STATUS, WATCHDOG).

The protocol is one datagram to $NOTIFY_SOCKET; the libraries that speak it are C bindings
(systemd-python, needing libsystemd headers to build) or unmaintained, and this is the
whole of it.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from importlib import resources
from pathlib import Path

UNIT_NAME = "routed.service"
UNIT_DIR = Path("/etc/systemd/system")


def notify(*states: str) -> bool:
    """Tell systemd `READY=1`, `STATUS=...`, `WATCHDOG=1`; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto("\n".join(states).encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec=), or None if there is no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


def unit_text(config: str, routed: str | None = None) -> str:
    """The shipped unit with this install's `routed` executable and config file filled in."""
    beside = Path(sys.executable).parent / "routed"  # this install's, even if another is on PATH
    executable = routed or (str(beside) if beside.exists() else shutil.which("routed") or "/usr/bin/routed")
    template = resources.files("routed.service").joinpath(UNIT_NAME).read_text()
    return template.replace("@ROUTED@", executable).replace("@CONFIG@", config)


def install(config: str, unit_dir: Path = UNIT_DIR) -> Path:
    path = unit_dir / UNIT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(unit_text(config))
    return path
