"""scripts/setup.sh: the demo's set-up installs only what the demo lab needs; the test set-up
everything else. Read from the script's own plan (`--print`), which is what it installs."""

from __future__ import annotations

import subprocess
from pathlib import Path

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"
TEST_ONLY = {
    "bird2",
    "frr",
    "iperf3",
    "tcpdump",
    "etcd-server",
    "etcd-client",
    "podman",
    "runc",
    "containernetworking-plugins",
    "busybox-static",
    "docker.io",
    "containerd",
    "debootstrap",
    "curl",
}


def plan(*args: str) -> tuple[set[str], str]:
    out = subprocess.run(["bash", str(SETUP), *args, "--print"], capture_output=True, text=True, check=True)
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    return set(lines["apt"].split()), lines["pip"]


def test_the_demo_installs_none_of_the_test_tools() -> None:
    apt, pip = plan("demo")
    assert apt.isdisjoint(TEST_ONLY), apt & TEST_ONLY
    assert {"iproute2", "iputils-ping", "python3-venv", "nftables", "python3-nftables"} <= apt
    assert pip == "."  # routed alone: no pytest, ruff, mypy, matplotlib, hypothesis


def test_the_test_set_up_installs_the_rest() -> None:
    apt, pip = plan()
    demo, _ = plan("demo")
    assert demo | TEST_ONLY <= apt
    assert pip == ".[dev]"


def test_the_demo_script_asks_for_the_demo_set_up() -> None:
    demo = (SETUP.parent / "demo.sh").read_text()
    assert "bash scripts/setup.sh demo\n" in demo and "scripts/setup.sh\n" not in demo
