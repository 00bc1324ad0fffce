"""Container runtimes in lab nodes, as the Docker and podman tests run them: dockerd with the
vfs storage driver, podman with runc and the CNI backend (see shared/notes/podman.md)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.lab import Lab
from tests.netns import wait_until
from tests.support.fabric import pids_in
from tests.traffic import kill_and_wait

DOCKERD = "dockerd --storage-driver vfs --live-restore"
ROUTED_NET = ("network", "create", "-d", "routed", "--ipam-driver", "routed")
# the dual-stack lab's h1 with Docker (and a short wait for a restarting routed)
H1_DOCKER = {"h1.yaml": "docker: {enabled: true, restart_wait: 3}"}


def docker(lab: Lab, node: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return lab.exec(node, "docker", *argv, check=check, timeout=90)


def dockerd_pid(lab: Lab, node: str) -> int:
    (pid,) = pids_in(lab.netns(node), "dockerd --storage-driver")
    return pid


def start_dockerd(lab: Lab, node: str) -> None:
    lab.exec(node, "sh", "-c", f"{DOCKERD} >> /tmp/dockerd.log 2>&1 &")
    wait_until(
        lambda: docker(lab, node, "info", check=False).returncode, 0, timeout=30, what=f"dockerd on {node}"
    )


@contextmanager
def dockerd_in(lab: Lab, nodes: tuple[str, ...], image: Path) -> Iterator[None]:
    """dockerd on each node with the image imported; afterwards, containers removed and each
    dockerd stopped by pid (the lab's own teardown then finds nothing of Docker's left)."""
    try:
        for node in nodes:
            start_dockerd(lab, node)
            docker(lab, node, "import", str(image), "bb:latest")
        yield
    finally:
        for node in nodes:
            ids = docker(lab, node, "ps", "-aq", check=False).stdout.split()
            if ids:
                docker(lab, node, "rm", "-f", *ids, check=False)
            for pid in pids_in(lab.netns(node), "dockerd --storage-driver"):
                kill_and_wait(pid, signal.SIGTERM)


def address_of(lab: Lab, node: str, container: str, network: str) -> str:
    out = docker(lab, node, "inspect", container, "--format", "{{json .NetworkSettings.Networks}}").stdout
    return str(json.loads(out)[network]["IPAddress"])


CONTAINERS_CONF = """\
[containers]
default_ulimits = []
[engine]
runtime = "runc"
[network]
network_backend = "cni"
cni_plugin_dirs = ["/tmp/cni/bin", "/usr/lib/cni"]
network_config_dir = "/tmp/cni/net.d"
"""


def podman(
    lab: Lab, node: str, files: Path, *argv: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return lab.exec(
        node,
        "env",
        f"CONTAINERS_CONF={files / 'containers.conf'}",
        "podman",
        "--storage-driver",
        "vfs",
        *argv,
        check=check,
        timeout=90,
    )
