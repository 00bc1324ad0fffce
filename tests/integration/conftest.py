"""Fixtures for root tests: a host namespace with a fabric link, workload namespaces, a daemon."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.common import busybox_tar
from tests.netns import netns_exists, sh, unique
from tests.support.runtimes import CONTAINERS_CONF

ROUTED = [sys.executable, "-m", "routed.cli"]


@dataclass
class Namespaces:
    made: list[str] = field(default_factory=list)

    def add(self, prefix: str = "rt") -> str:
        name = unique(prefix)
        sh(["ip", "netns", "add", name])
        self.made.append(name)
        sh(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def cleanup(self) -> None:
        for name in reversed(self.made):
            if netns_exists(name):
                subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    made = Namespaces()
    try:
        yield made
    finally:
        made.cleanup()


@dataclass
class Host:
    netns: str
    address: str
    dir: Path
    config: Path

    def routed(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the routed CLI inside the host namespace, as a user would."""
        result = subprocess.run(
            ["ip", "netns", "exec", self.netns, *ROUTED, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"routed {' '.join(args)} exited {result.returncode}\n{result.stdout}{result.stderr}"
            )
        return result


def write_config(path: Path, name: str, address: str, state: Path, socket: Path, extra: str = "") -> None:
    path.write_text(
        textwrap.dedent(f"""\
        name: {name}
        router_id: {address}
        asn: 64512
        fabric: {{interface: fab0, address: {address}}}
        pools: [10.65.0.0/24, fd00:65::/64]
        api: {{socket: {socket}}}
        state_dir: {state}
        fib: {{resync_interval: 2}}
        """)
        + extra
    )


@pytest.fixture
def host(namespaces: Namespaces, tmp_path: Path) -> Host:
    """A host namespace with a fabric interface and address, and a config for it."""
    netns = namespaces.add()
    address = "10.0.0.1"
    sh(["ip", "-n", netns, "link", "add", "fab0", "type", "veth", "peer", "name", "fab1"])
    sh(["ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "fab0"])
    for link in ("fab0", "fab1"):
        sh(["ip", "-n", netns, "link", "set", link, "up"])
    config = tmp_path / "routed.yaml"
    write_config(config, "h1", address, tmp_path / "state", tmp_path / "api.sock")
    return Host(netns, address, tmp_path, config)


@dataclass
class Daemon:
    host: Host
    process: subprocess.Popen[str] | None = None
    log: Path | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        self.log = self.host.dir / "routed.log"
        handle = open(self.log, "a")  # noqa: SIM115 - the daemon holds it while it runs
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.host.netns, *ROUTED, "run", "-c", str(self.host.config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        socket = self.host.dir / "api.sock"
        deadline = time.monotonic() + 20
        while not (socket.exists() and "event=started" in self.log.read_text()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"routed did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        os.killpg(self.process.pid, sig)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=10)

    def text(self) -> str:
        return self.log.read_text() if self.log else ""


@pytest.fixture
def daemon(host: Host) -> Iterator[Daemon]:
    running = Daemon(host)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def image() -> Iterator[Path]:
    root = Path("/tmp") / f"rt-docker-{uuid.uuid4().hex[:8]}"
    try:
        yield busybox_tar(root)
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture
def podman_files() -> Iterator[Path]:
    """containers.conf and a busybox image tar, where the lab nodes' /tmp shows them."""
    root = Path("/tmp") / f"rt-podman-{uuid.uuid4().hex[:8]}"
    try:
        busybox_tar(root)
        (root / "containers.conf").write_text(CONTAINERS_CONF)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
