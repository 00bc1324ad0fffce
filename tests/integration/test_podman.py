"""podman (Debian 12's 4.3, CNI backend) starting containers on routed's network, for real:
two hosts of labs/quickstart.clab.yml, the plugin installed with `routed cni install`, an
image imported from busybox-static (no registry).

podman in a lab node: runc (crun cannot run on this machine's hybrid cgroups), no default
ulimits, the vfs storage driver (overlay on the node's overlay /var does not stack), and the
CNI directories under the node's private /tmp (see shared/notes/podman.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lab import Lab, running_lab
from tests.netns import wait_until
from tests.support.fabric import kernel_routes, route_to
from tests.support.runtimes import podman

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)


def address_of(lab: Lab, node: str, files: Path, name: str) -> str:
    out = podman(lab, node, files, "inspect", name, "--format", "{{json .NetworkSettings.Networks}}").stdout
    return str(json.loads(out)["routed"]["IPAddress"])


def test_podman_containers_on_two_hosts(podman_files: Path) -> None:
    files = podman_files
    with running_lab("quickstart") as lab:
        for node in ("h1", "h2"):
            installed = lab.exec(
                node, "routed", "cni", "install", "--bin-dir", "/tmp/cni/bin", "--conf-dir", "/tmp/cni/net.d"
            ).stdout
            assert "plugin: /tmp/cni/bin/routed" in installed
            podman(lab, node, files, "import", str(files / "bb.tar"), "localhost/bb:latest")
        assert "routed" in podman(lab, "h1", files, "network", "ls", "--format", "{{.Name}}").stdout
        podman(
            lab,
            "h1",
            files,
            "run",
            "-d",
            "--name",
            "c1",
            "--network",
            "routed",
            "localhost/bb:latest",
            "sleep",
            "600",
        )
        serve = "mkdir -p /www && echo hello-from-h2 > /www/index.html && httpd -f -p 80 -h /www"
        podman(
            lab,
            "h2",
            files,
            "run",
            "-d",
            "--name",
            "c2",
            "--network",
            "routed",
            "-p",
            "8080:80",
            "localhost/bb:latest",
            "sh",
            "-c",
            serve,
        )
        # each got the next address of its own host's block
        c1, c2 = address_of(lab, "h1", files, "c1"), address_of(lab, "h2", files, "c2")
        assert (c1, c2) == ("10.65.1.3", "10.65.2.3")
        # they reach each other across hosts, routed with no encapsulation: h1 sends c2's
        # block straight to h2's fabric address, and no tunnel device exists anywhere
        wait_until(
            lambda: podman(lab, "h1", files, "exec", "c1", "ping", "-c1", "-W1", c2, check=False).returncode,
            0,
            timeout=20,
            what="c1 on h1 pings c2 on h2",
        )
        assert kernel_routes(lab, "h1")["10.65.2.0/26"] == "10.0.0.12"
        for node in ("h1", "h2"):
            kinds = {
                link.get("linkinfo", {}).get("info_kind")
                for link in json.loads(lab.exec(node, "ip", "-j", "-d", "link", "show").stdout)
            }
            assert not kinds & {"vxlan", "ipip", "gre", "geneve", "sit", "wireguard"}, (node, kinds)
        # port mapping (portmap after routed in the conflist): from the fabric to c2's port 80
        wait_until(
            lambda: lab.exec(
                "h3", "wget", "-q", "-O", "-", "-T", "2", "http://10.0.0.12:8080/", check=False
            ).stdout.strip(),
            "hello-from-h2",
            timeout=20,
            what="h3 reaches c2 through h2's port 8080",
        )
        # a container with an address outside its host's block (podman run --ip): its /32 is
        # announced and reaches the other host; `podman rm` takes it away there too
        podman(
            lab,
            "h1",
            files,
            "run",
            "-d",
            "--name",
            "c3",
            "--network",
            "routed",
            "--ip",
            "10.65.77.3",
            "localhost/bb:latest",
            "sleep",
            "600",
        )
        wait_until(lambda: kernel_routes(lab, "h2").get("10.65.77.3"), "10.0.0.11", timeout=15)
        podman(lab, "h1", files, "rm", "-f", "-t", "0", "c3")
        wait_until(
            lambda: "10.65.77.3" in kernel_routes(lab, "h2"), False, timeout=15, what="c3's /32 gone from h2"
        )
        # `podman rm` of c1 releases its address: the workload and its /32 go, and h1 answers
        # for the unused address of its block at once
        podman(lab, "h1", files, "rm", "-f", "-t", "0", "c1")
        ids = [w["id"] for w in json.loads(lab.exec("h1", "routed", "workload", "list", "--json").stdout)]
        assert not [i for i in ids if i.startswith("cni-")], ids
        assert route_to(lab, "h1", c1) == "unreachable"
        probe = lab.exec("h2", "ip", "netns", "exec", "web1", "ping", "-c1", "-W2", c1, check=False)
        assert probe.returncode != 0 and "Unreachable" in probe.stdout, probe.stdout
        # and the next container gets that address again
        podman(
            lab,
            "h1",
            files,
            "run",
            "-d",
            "--name",
            "c4",
            "--network",
            "routed",
            "localhost/bb:latest",
            "sleep",
            "600",
        )
        assert address_of(lab, "h1", files, "c4") == c1
        for node, name in (("h1", "c4"), ("h2", "c2")):
            podman(lab, node, files, "rm", "-f", "-t", "0", name)


def test_podman_containers_on_two_dual_stack_hosts_reach_each_other_over_ipv6(podman_files: Path) -> None:
    """labs/dual-stack.clab.yml: a podman container gets an address of each family from its
    host's blocks, and containers on two hosts reach each other over IPv6 (the /122 of each
    host routed via its IPv6 fabric address)."""
    files = podman_files
    with running_lab("dual-stack") as lab:
        for node in ("h1", "h2"):
            lab.exec(
                node, "routed", "cni", "install", "--bin-dir", "/tmp/cni/bin", "--conf-dir", "/tmp/cni/net.d"
            )
            podman(lab, node, files, "import", str(files / "bb.tar"), "localhost/bb:latest")
            podman(
                lab,
                node,
                files,
                "run",
                "-d",
                "--name",
                "c",
                "--network",
                "routed",
                "localhost/bb:latest",
                "sleep",
                "600",
            )
        inspect = "{{json .NetworkSettings.Networks}}"
        c1, c2 = (
            json.loads(podman(lab, n, files, "inspect", "c", "--format", inspect).stdout)["routed"]
            for n in ("h1", "h2")
        )
        assert (c1["IPAddress"], c2["IPAddress"]) == ("10.65.1.3", "10.65.2.3")
        assert (c1["GlobalIPv6Address"], c2["GlobalIPv6Address"]) == ("fd00:65:0:1::3", "fd00:65:0:2::3")
        wait_until(lambda: kernel_routes(lab, "h1", 6).get("fd00:65:0:2::/122"), "fd00:0:0:1::12", timeout=30)
        pinged = podman(
            lab, "h1", files, "exec", "c", "ping", "-c5", "-i0.2", "-W1", "fd00:65:0:2::3", check=False
        )
        assert " 0% packet loss" in pinged.stdout, pinged.stdout + pinged.stderr
        back = podman(
            lab, "h2", files, "exec", "c", "ping", "-c5", "-i0.2", "-W1", "fd00:65:0:1::3", check=False
        )
        assert " 0% packet loss" in back.stdout, back.stdout + back.stderr
        for node in ("h1", "h2"):
            podman(lab, node, files, "rm", "-f", "-t", "0", "c")
