"""routed installed the way users install it: a wheel (not editable) in a fresh venv outside
the checkout, bringing up a lab whose nodes run that installation's daemon."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import LABS
from tests.netns import wait_until
from tests.support.fabric import pids_in

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def installed() -> Iterator[Path]:
    """A venv under /tmp with routed's wheel installed; its `routed`."""
    where = Path("/tmp") / f"rt-wheel-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "-w",
                str(where),
                str(ROOT),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        (wheel,) = where.glob("routed-*.whl")
        subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True, timeout=120)
        pip = [
            str(where / "venv" / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
        ]
        subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=600)
        yield where / "venv" / "bin" / "routed"
    finally:
        subprocess.run(["rm", "-rf", str(where)], check=False)


@pytest.mark.long(90)
def test_a_wheel_outside_the_checkout_runs_a_lab(installed: Path) -> None:
    # nothing of the checkout on the installed routed's path
    where = subprocess.run(
        [str(installed.parent / "python"), "-c", "import routed; print(routed.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout
    assert "site-packages" in where and str(ROOT) not in where, where
    # the systemd unit ships too, filled in with the installed routed
    unit = subprocess.run(
        [str(installed), "service", "install", "--print", "-c", str(LABS / "quickstart" / "h1.yaml")],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert unit.returncode == 0 and f"ExecStart={installed} run -c " in unit.stdout, unit
    name = uuid.uuid4().hex[:8]
    selector = [str(LABS / "quickstart.clab.yml"), "--name", name, "--prefix", "rt"]

    def routed_in(node: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(installed), "lab", "exec", *selector, node, "--", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )

    try:
        up = subprocess.run(
            [str(installed), "lab", "up", *selector], capture_output=True, text=True, timeout=120, cwd="/"
        )
        assert up.returncode == 0, up.stdout + up.stderr
        # every node's daemon is the installed one, and the fabric converges
        for node in ("h1", "h2", "h3", "rr1"):
            wait_until(lambda n=node: routed_in(n, "routed", "status", "--json").returncode, 0, timeout=30)
        (daemon,) = pids_in(f"rt-{name}-h1", "routed run")
        assert str(installed.parent) in Path(f"/proc/{daemon}/cmdline").read_text(), (
            "not the installed routed"
        )
        wait_until(
            lambda: (
                routed_in("h1", "ip", "netns", "exec", "web1", "ping", "-c1", "-W1", "10.65.3.1").returncode
            ),
            0,
            timeout=40,
        )
        # the anti-spoofing table works from the wheel too (libnftables through Debian's binding)
        firewall = json.loads(routed_in("h1", "routed", "status", "--json").stdout)["firewall"]
        assert firewall["error"] is None and firewall["workload_interfaces"] == 2, firewall
        assert "sources4" in routed_in("h1", "nft", "list", "table", "inet", "routed").stdout
    finally:
        subprocess.run([str(installed), "lab", "down", *selector], capture_output=True, timeout=120, cwd="/")
