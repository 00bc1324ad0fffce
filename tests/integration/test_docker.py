"""Docker (Debian's docker.io, a real dockerd per host) on routed's network and IPAM plugin:
two hosts of labs/quickstart.clab.yml (which enables the plugin), an image imported from
busybox-static.

dockerd in a lab node: the vfs storage driver (overlay on the node's overlay /var does not
stack), live-restore (a dockerd restart leaves containers running), everything else at its
defaults, which land in the node's own /run and /var (see shared/notes/podman.md). The test
starts each dockerd and stops it by pid.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab import Lab, lab_variant, running_lab
from tests.netns import wait_until
from tests.support.fabric import daemon_pid, kernel_routes, route_to
from tests.support.runtimes import (
    H1_DOCKER,
    ROUTED_NET,
    address_of,
    docker,
    dockerd_in,
    dockerd_pid,
    start_dockerd,
)
from tests.traffic import PingStream, echoes, kill_and_wait, lost

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

TUNNELS = {"vxlan", "ipip", "gre", "geneve", "sit", "wireguard"}


def docker_workloads(lab: Lab, node: str) -> dict[str, list[str]]:
    listed = json.loads(lab.exec(node, "routed", "workload", "list", "--json").stdout)
    return {w["id"]: w["ips"] for w in listed if w["id"].startswith("docker-")}


@pytest.mark.long(80)
def test_docker_containers_on_two_hosts(image: Path) -> None:
    with running_lab("quickstart") as lab, dockerd_in(lab, ("h1", "h2"), image):
        for node in ("h1", "h2"):
            docker(lab, node, *ROUTED_NET, "rnet")
        docker(lab, "h1", "run", "-d", "--name", "c1", "--network", "rnet", "bb:latest", "sleep", "600")
        serve = "mkdir -p /www && echo hello-from-h2 > /www/index.html && httpd -f -p 80 -h /www"
        docker(
            lab,
            "h2",
            "run",
            "-d",
            "--name",
            "c2",
            "--network",
            "rnet",
            "-p",
            "8080:80",
            "bb:latest",
            "sh",
            "-c",
            serve,
        )
        # each got the next address of its own host's block, as a /32 routed to its veth
        c1, c2 = address_of(lab, "h1", "c1", "rnet"), address_of(lab, "h2", "c2", "rnet")
        assert (c1, c2) == ("10.65.1.3", "10.65.2.3")
        inside = docker(lab, "h1", "exec", "c1", "ip", "-4", "addr", "show", "eth0").stdout
        assert f"inet {c1}/32" in inside
        assert "default via 169.254.1.1 dev eth0" in docker(lab, "h1", "exec", "c1", "ip", "route").stdout
        assert list(docker_workloads(lab, "h1").values()) == [[c1]]
        assert kernel_routes(lab, "h1")[c1].startswith("rt")  # proto routed, to the host-side veth
        # across hosts, with no encapsulation; a third host's kernel routes both
        wait_until(
            lambda: docker(lab, "h1", "exec", "c1", "ping", "-c1", "-W1", c2, check=False).returncode,
            0,
            timeout=20,
            what="c1 on h1 pings c2 on h2",
        )
        assert (route_to(lab, "h3", c1), route_to(lab, "h3", c2)) == ("10.0.0.11", "10.0.0.12")
        for node in ("h1", "h2"):
            kinds = {
                link.get("linkinfo", {}).get("info_kind")
                for link in json.loads(lab.exec(node, "ip", "-j", "-d", "link", "show").stdout)
            }
            assert not kinds & TUNNELS, (node, kinds)
        # -p 8080:80: from the fabric to c2's port 80
        wait_until(
            lambda: (
                lab.exec(
                    "h3", "wget", "-q", "-O", "-", "-T", "2", "http://10.0.0.12:8080/", check=False
                ).stdout
            ),
            "hello-from-h2\n",
            timeout=15,
            what="published port 8080 on h2",
        )
        # a container with --ip outside every block is announced as its own /32 ...
        for node in ("h1", "h2"):
            docker(lab, node, *ROUTED_NET, "--subnet", "10.65.200.0/24", "edge")
        docker(
            lab,
            "h2",
            "run",
            "-d",
            "--name",
            "c3",
            "--network",
            "edge",
            "--ip",
            "10.65.200.5",
            "bb:latest",
            "sleep",
            "600",
        )
        wait_until(
            lambda: kernel_routes(lab, "h3").get("10.65.200.5"),
            "10.0.0.12",
            timeout=15,
            what="c3's /32 on h3",
        )
        assert (
            docker(lab, "h1", "exec", "c1", "ping", "-c1", "-W2", "10.65.200.5", check=False).returncode == 0
        )
        # ... and `docker rm` withdraws it everywhere, and gives back the address and the ports
        docker(lab, "h2", "rm", "-f", "c3", "c2")
        for node in ("h1", "h3"):
            wait_until(
                lambda n=node: "10.65.200.5" in kernel_routes(lab, n),
                False,
                timeout=15,
                what=f"withdrawn on {node}",
            )
        assert docker_workloads(lab, "h2") == {}
        assert c2 not in kernel_routes(lab, "h2")
        assert "10.65.2.3" not in lab.exec("h2", "iptables-save", "-t", "nat").stdout
        state = json.loads(lab.exec("h2", "cat", "/var/lib/routed/docker.json").stdout)
        assert state["addresses"] == {} and state["published"] == {}
        # nothing leaked: the next container takes the address c2 had
        docker(lab, "h2", "run", "-d", "--name", "c4", "--network", "rnet", "bb:latest", "sleep", "600")
        assert address_of(lab, "h2", "c4", "rnet") == "10.65.2.3"


@pytest.mark.long(120)
def test_restarts_of_routed_and_dockerd_in_either_order(image: Path) -> None:
    with (
        lab_variant("dual-stack", H1_DOCKER) as topology,
        running_lab(topology) as lab,
        dockerd_in(lab, ("h1",), image),
    ):
        docker(lab, "h1", *ROUTED_NET, "--ipv6", "rnet")
        docker(lab, "h1", "run", "-d", "--name", "c1", "--network", "rnet", "bb:latest", "sleep", "600")
        c1 = address_of(lab, "h1", "c1", "rnet")
        # dual stack: a /128 from h1's IPv6 block too, and the default route via fe80::1
        inside = docker(lab, "h1", "exec", "c1", "ip", "-6", "addr", "show", "eth0").stdout
        assert "inet6 fd00:65:0:1::3/128" in inside, inside
        assert "default via fe80::1 dev eth0" in docker(lab, "h1", "exec", "c1", "ip", "-6", "route").stdout
        assert (
            "fd00:65:0:1::3 dev rt" in lab.exec("h1", "ip", "-6", "route", "show", "proto", "routed").stdout
        )
        wait_until(
            lambda: lab.exec("h1", "ping", "-6", "-c1", "-W1", "fd00:65:0:1::3", check=False).returncode, 0
        )
        wait_until(lambda: route_to(lab, "h3", c1), "10.0.0.11", timeout=30, what="h3 routes c1")
        wait_until(lambda: lab.exec("h3", "ping", "-c1", "-W1", c1, check=False).returncode, 0, timeout=10)
        # and over IPv6, from a container on another host: its /128 goes out over the IPv6 sessions
        c1_v6 = "fd00:65:0:1::3"
        wait_until(
            lambda: route_to(lab, "h3", c1_v6), "fd00:0:0:1::11", timeout=30, what="h3 routes c1's /128"
        )
        assert echoes(lab, ("h3", "web1"), ("h1", "web1"), "fd00:65:0:1::1", 5, "fd00:65:0:3::1") == (5, 5)
        h3_to_c1 = lab.exec(
            "h3", "ip", "netns", "exec", "web1", "ping", "-6", "-c5", "-i0.05", "-W1", c1_v6, check=False
        )
        assert " 0% packet loss" in h3_to_c1.stdout, h3_to_c1.stdout
        before = docker_workloads(lab, "h1")
        reserved = json.loads(lab.exec("h1", "cat", "/var/lib/routed/docker.json").stdout)["addresses"]

        def under_stream(event: str, action: Callable[[], None]) -> None:
            stream = PingStream(lab, "h3", "web1", c1, 12).start()
            time.sleep(2)
            action()
            counts = lost([stream])
            assert sum(n for _, n in counts.values()) == 0, (event, counts)
            assert docker_workloads(lab, "h1") == before, event
            assert (
                json.loads(lab.exec("h1", "cat", "/var/lib/routed/docker.json").stdout)["addresses"]
                == reserved
            )
            assert "Up" in docker(lab, "h1", "ps", "--filter", "name=c1", "--format", "{{.Status}}").stdout

        def routed_then_dockerd() -> None:
            kill_and_wait(daemon_pid(lab, "h1"), signal.SIGKILL)
            lab.start("h1")
            kill_and_wait(dockerd_pid(lab, "h1"), signal.SIGTERM)
            start_dockerd(lab, "h1")

        def dockerd_then_routed() -> None:
            kill_and_wait(dockerd_pid(lab, "h1"), signal.SIGTERM)
            kill_and_wait(daemon_pid(lab, "h1"), signal.SIGTERM)
            start_dockerd(lab, "h1")  # while routed is down
            lab.start("h1")

        under_stream("routed, then dockerd", routed_then_dockerd)
        under_stream("dockerd, then routed", dockerd_then_routed)
        # both sides still agree: the container leaves cleanly, and its address is free again
        docker(lab, "h1", "rm", "-f", "c1")
        assert docker_workloads(lab, "h1") == {}
        docker(lab, "h1", "run", "-d", "--name", "c2", "--network", "rnet", "bb:latest", "sleep", "600")
        assert address_of(lab, "h1", "c2", "rnet") == c1

        # the errors a Docker user sees, each naming the fix
        def refused(*argv: str) -> str:
            result = docker(lab, "h1", *argv, check=False)
            assert result.returncode != 0, argv
            return result.stderr

        assert "is outside routed's pools (10.65.0.0/16, fd00:65::/48); use a --subnet inside" in refused(
            *ROUTED_NET, "--subnet", "192.168.7.0/24", "bad"
        )
        assert "add --ipam-driver routed" in refused("network", "create", "-d", "routed", "bad")
        # h1's block 10.65.1.0/26 holds web1 (.1), web2 (.2) and c2 (.3): a /30 of it is full
        docker(lab, "h1", *ROUTED_NET, "--subnet", "10.65.1.0/30", "small")
        assert "every IPv4 block of this node is full inside 10.65.1.0/30" in refused(
            "run", "--rm", "--network", "small", "bb:latest", "true"
        )
        kill_and_wait(daemon_pid(lab, "h1"), signal.SIGTERM)
        assert "routed is not running on this host" in refused(
            "run", "--rm", "--network", "rnet", "bb:latest", "true"
        )
        assert kernel_routes(lab, "h1")[c1].startswith("rt")  # the running container keeps its route
