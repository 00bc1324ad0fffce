"""containerd (Debian's 1.6) on two hosts of labs/quickstart.clab.yml, started as a user starts
it by hand, with a state and socket of its own; containers run with `ctr run --cni`, which
attaches them through go-cni (the library containerd's CRI plugin uses for pods) with the
conflist `routed cni install` wrote. Read shared/notes/containerd.md."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bench.common import busybox_oci
from tests.lab import Lab, running_lab
from tests.netns import wait_until
from tests.support.fabric import pids_in, route_to
from tests.traffic import kill_and_wait

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

SOCKET = "/run/ctd-rt/containerd.sock"
CTR = ("ctr", "-a", SOCKET, "-n", "rt")
PAUSE = "docker.io/library/pause-bb:latest"  # a pod sandbox's image: busybox sleeping
CONFIG = f"""\
version = 2
root = "/var/lib/ctd-rt"
state = "/run/ctd-rt"
[grpc]
  address = "{SOCKET}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  # a lab node is not a machine of its own: runc cannot start a sandbox here with the CRI's
  # cgroup, AppArmor and OOM-score settings ("can't get final child's PID from pipe")
  disable_cgroup = true
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
"""
REPO = Path(__file__).resolve().parents[2]
# In a lab node: /opt is the host's, so the node gets a tmpfs of its own there for the CNI
# binaries (go-cni in ctr 1.6 looks in /opt/cni/bin only), and /etc/cni/net.d one of its own
# too (go-cni takes the first conflist, and the host may have podman's).
PREPARE = """\
set -e
mount -t tmpfs tmpfs /opt
mkdir -p /opt/cni/bin /etc/cni/net.d /tmp/ctd
mount -t tmpfs tmpfs /etc/cni/net.d
ln -s /usr/lib/cni/* /opt/cni/bin/
routed cni install --bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d
"""


def ctr(lab: Lab, node: str, *argv: str, check: bool = True) -> str:
    return lab.exec(node, *CTR, *argv, check=check, timeout=60).stdout


def start_containerd(lab: Lab, node: str) -> None:
    lab.exec(node, "sh", "-c", "containerd --config /tmp/ctd/config.toml >> /tmp/ctd/log 2>&1 &")
    wait_until(
        lambda: lab.exec(node, *CTR, "version", check=False).returncode,
        0,
        timeout=20,
        what=f"containerd on {node}",
    )


def containerd_pid(lab: Lab, node: str) -> int:
    (pid,) = pids_in(lab.netns(node), "containerd --config /tmp/ctd/config.toml")
    return pid


@contextmanager
def containerd_in(lab: Lab, nodes: tuple[str, ...], image: Path, pause: Path) -> Iterator[None]:
    try:
        for node in nodes:
            lab.exec(node, "sh", "-c", PREPARE)
            lab.exec(node, "sh", "-c", f"cat > /tmp/ctd/config.toml <<'EOF'\n{CONFIG}EOF\n")
            start_containerd(lab, node)
            ctr(lab, node, "images", "import", "--snapshotter", "native", str(image))
            # the CRI plugin's images live in containerd's k8s.io namespace
            lab.exec(
                node,
                "ctr",
                "-a",
                SOCKET,
                "-n",
                "k8s.io",
                "images",
                "import",
                "--snapshotter",
                "native",
                str(pause),
            )
        yield
    finally:
        for node in nodes:
            for task in ctr(lab, node, "tasks", "ls", "-q", check=False).split():
                ctr(lab, node, "tasks", "kill", "-s", "KILL", task, check=False)
                for _ in range(50):  # its process gone, before its shim is
                    if lab.exec(node, *CTR, "tasks", "delete", task, check=False).returncode == 0:
                        break
            for pid in pids_in(lab.netns(node), "containerd-shim") + pids_in(
                lab.netns(node), "containerd --config"
            ):
                kill_and_wait(pid, signal.SIGKILL)
            lab.exec(node, "sh", "-c", "umount -R /run/ctd-rt /var/lib/ctd-rt 2>/dev/null; true", check=False)


@pytest.fixture
def oci_images() -> Iterator[tuple[Path, Path]]:
    """busybox as a container image, and as a pod sandbox's (it sleeps, as pause does)."""
    root = Path("/tmp") / f"rt-oci-{uuid.uuid4().hex[:8]}"
    try:
        image = busybox_oci(root / "bb")
        yield image, busybox_oci(root / "pause", PAUSE, ("/bin/sleep", "86400"))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def cri(lab: Lab, node: str, *argv: str) -> Any:
    """A call of tests/support/cri.py inside the node, as a kubelet would make it."""
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from tests.support.cri import main; main(sys.argv[1:])"
    return json.loads(lab.exec(node, sys.executable, "-c", code, SOCKET, *argv, timeout=90).stdout)


def run(lab: Lab, node: str, name: str) -> None:
    ctr(
        lab,
        node,
        "run",
        "-d",
        "--cni",
        "--snapshotter",
        "native",
        "docker.io/library/bb:latest",
        name,
        "sleep",
        "3600",
    )


def in_container(lab: Lab, node: str, name: str, *argv: str, check: bool = True) -> str:
    return ctr(lab, node, "tasks", "exec", "--exec-id", uuid.uuid4().hex[:8], name, *argv, check=check)


def address(lab: Lab, node: str, name: str) -> str:
    found = re.search(
        r"inet (\d+\.\d+\.\d+\.\d+)/32", in_container(lab, node, name, "ip", "-4", "addr", "show", "eth0")
    )
    assert found, f"{name} on {node} has no /32"
    return found[1]


def workloads(lab: Lab, node: str) -> dict[str, Any]:
    return {w["id"]: w for w in json.loads(lab.exec(node, "routed", "workload", "list", "--json").stdout)}


def pings(lab: Lab, node: str, name: str, target: str) -> int:
    out = in_container(lab, node, name, "ping", "-c", "3", "-W", "1", target, check=False)
    found = re.search(r"(\d+) packets received", out)
    return int(found[1]) if found else 0


@pytest.mark.long(40)
def test_containerd_runs_containers_on_routed_across_hosts(oci_images: tuple[Path, Path]) -> None:
    with running_lab("quickstart") as lab, containerd_in(lab, ("h1", "h2"), *oci_images):
        run(lab, "h1", "c1")
        run(lab, "h2", "c2")
        a1, a2 = address(lab, "h1", "c1"), address(lab, "h2", "c2")
        # addresses from each host's block, the workloads named by containerd's namespace and id
        assert a1.startswith("10.65.1.") and a2.startswith("10.65.2."), (a1, a2)
        assert workloads(lab, "h1")["cni-rt-c1:eth0"]["ips"] == [a1]
        # routed across hosts, no tunnel: h2 reaches h1's container via h1's fabric address
        wait_until(lambda: route_to(lab, "h2", a1), "10.0.0.11", timeout=30, what="h2 routes h1's container")
        assert pings(lab, "h1", "c1", a2) == 3 and pings(lab, "h2", "c2", a1) == 3
        links = lab.exec("h1", "ip", "-d", "link").stdout
        assert not re.search(r"\b(vxlan|ipip|gre|geneve|wireguard)\b", links)

        # containerd restarts: running containers keep their addresses and routes
        kill_and_wait(containerd_pid(lab, "h1"), signal.SIGTERM)
        assert pings(lab, "h2", "c2", a1) == 3
        start_containerd(lab, "h1")
        assert pings(lab, "h1", "c1", a2) == 3

        # killed and removed: ctr sends no CNI DEL for a detached container, so routed notices
        # the container's namespace and veth gone and gives the address back
        ctr(lab, "h1", "tasks", "kill", "-s", "KILL", "c1")
        wait_until(
            lambda: lab.exec("h1", *CTR, "tasks", "delete", "c1", check=False).returncode,
            0,
            timeout=15,
            what="c1's task deleted once it ended",
        )
        ctr(lab, "h1", "containers", "rm", "c1")
        wait_until(
            lambda: "cni-rt-c1:eth0" in workloads(lab, "h1"), False, timeout=20, what="c1's workload gone"
        )
        assert a1 not in lab.exec("h1", "ip", "route", "show", "proto", "201").stdout
        # the address is free again: the next container gets it
        run(lab, "h1", "c3")
        assert address(lab, "h1", "c3") == a1
        assert pings(lab, "h2", "c2", a1) == 3

        # a pod, as a kubelet starts one through containerd's CRI plugin (RunPodSandbox): its
        # address from h1's block, reachable from h2's containers; StopPodSandbox is CNI DEL
        pod = cri(lab, "h1", "run", "pod1")
        assert pod["ready"] and pod["ip"].startswith("10.65.1."), pod
        wid = next(w for w, found in workloads(lab, "h1").items() if found["ips"] == [pod["ip"]])
        assert pings(lab, "h2", "c2", pod["ip"]) == 3
        cri(lab, "h1", "stop", pod["id"])
        assert wid not in workloads(lab, "h1")
        assert pod["ip"] not in lab.exec("h1", "ip", "route", "show", "proto", "201").stdout
        cri(lab, "h1", "remove", pod["id"])
