"""Outgoing NAT (issue 28) in labs/outside.clab.yml: containers reach a node beyond a router that
knows nothing of the pools, seen from the receiving end. IPv4 NATed by default, IPv6 only when a
pool asks; traffic to containers, hosts and exclusions keeps its source; routed's nft table
restored after `nft flush ruleset` and `nft delete table`; a real dockerd's bridge network with a
published port works beside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.lab import Lab, lab_variant, running_lab
from tests.netns import wait_until
from tests.support.fabric import status
from tests.support.flows import received
from tests.support.runtimes import ROUTED_NET, docker, dockerd_in
from tests.traffic import ping_from

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

OUTSIDE4, OUTSIDE6 = "10.200.0.2", "fd00:200::2"
WEB1 = ("h1", "web1")


def answered(lab: Lab, where: tuple[str, str], address: str, count: int = 3) -> int:
    family = ["-6"] if ":" in address else []
    return ping_from(lab, *where, *family, f"-c{count}", "-i0.1", "-W1", address)


def address_of(lab: Lab, node: str, netns: str, version: int) -> str:
    flag = "-4" if version == 4 else "-6"
    out = lab.exec(node, "ip", "netns", "exec", netns, "ip", flag, "-o", "addr", "show", "eth0").stdout
    found = re.search(r"inet6? ([0-9a-f.:]+)/", out)
    assert found, out
    return found[1]


def nat_status(lab: Lab, node: str) -> dict[str, dict[str, object]]:
    return {p["pool"]: p for p in status(lab, node)["firewall"]["nat"]}


def reload_with(lab: Lab, config: Path, pools: str) -> None:
    """h1's `pools:` written anew (in place: the node sees the file through its bind), reloaded."""
    text, count = re.subn(r"^pools:\n(?:  - .*\n)+", pools, config.read_text(), flags=re.M)
    assert count == 1, text
    config.write_text(text)
    result = lab.exec("h1", "routed", "reload", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.long(45)
def test_containers_reach_the_outside_through_nat_and_keep_their_source_inside() -> None:
    with lab_variant("outside", {}) as topology, running_lab(topology) as lab:
        config = topology.parent / "outside" / "h1.yaml"
        web1_v4, web1_v6 = address_of(lab, *WEB1, 4), address_of(lab, *WEB1, 6)
        wait_until(
            lambda: answered(lab, ("h2", "web1"), web1_v4, 1), 1, timeout=60, what="BGP: h2 reaches h1's web1"
        )

        # beyond the fabric: answered, and the outside sees h1's own address
        assert answered(lab, WEB1, OUTSIDE4) == 3
        seen = received(lab, ("outside", None), OUTSIDE4, WEB1)
        assert seen.source == "10.0.0.11", seen
        # inside: a container on h2, h2 itself, the router on the fabric see the container
        h2_web1 = address_of(lab, "h2", "web1", 4)
        assert received(lab, ("h2", "web1"), h2_web1, WEB1).source == web1_v4
        assert received(lab, ("h2", None), "10.0.0.12", WEB1).source == web1_v4
        assert received(lab, ("gw", None), "10.0.0.254", WEB1).source == web1_v4
        # IPv6 is not NATed unless asked: the outside sees the container and cannot answer it
        assert answered(lab, WEB1, OUTSIDE6) == 0
        assert received(lab, ("outside", None), OUTSIDE6, WEB1).source == web1_v6
        # status and metrics count what was NATed
        nat = nat_status(lab, "h1")
        assert nat["10.65.0.0/16"]["nat_outgoing"] and nat["10.65.0.0/16"]["mode"] == "masquerade"
        # the ping's three echoes and their replies, one connection (and the UDP probe's)
        assert (
            int(str(nat["10.65.0.0/16"]["packets"])) >= 6
            and int(str(nat["10.65.0.0/16"]["connections"])) >= 2
        )
        assert not nat["fd00:65::/48"]["nat_outgoing"]
        metrics = lab.exec("h1", "curl", "-s", "http://127.0.0.1:9180/metrics").stdout
        natted = re.search(r'^routed_nat_packets_total\{pool="10.65.0.0/16"\} (\d+)', metrics, re.M)
        assert natted and int(float(natted[1])) >= 6, metrics
        assert re.search(r'^routed_nat_connections_total\{pool="10.65.0.0/16"\} [1-9]', metrics, re.M), (
            metrics
        )
        assert "routed_workload_mtu 1500.0" in metrics
        assert "nat outgoing: 10.65.0.0/16 masquerade" in lab.exec("h1", "routed", "status").stdout

        # someone flushes every table, or deletes ours: routed's comes back within its resync
        for wipe in (["flush", "ruleset"], ["delete", "table", "inet", "routed"]):
            lab.exec("h1", "nft", *wipe)
            wait_until(
                lambda: "masquerade" in lab.exec("h1", "nft", "list", "ruleset").stdout,
                timeout=15,
                what=f"routed's table back after nft {' '.join(wipe)}",
            )
            assert received(lab, ("outside", None), OUTSIDE4, WEB1).source == "10.0.0.11"

        # a fixed source address and port range for IPv4; NAT66 asked for on the IPv6 pool
        lab.exec("h1", "ip", "addr", "add", "10.0.0.111/24", "dev", "eth1")
        reload_with(
            lab,
            config,
            "pools:\n"
            "  - {cidr: 10.65.0.0/16, nat_outgoing_address: 10.0.0.111, nat_outgoing_ports: 30000-30009}\n"
            '  - {cidr: "fd00:65::/48", nat_outgoing: true}\n',
        )
        wait_until(lambda: nat_status(lab, "h1")["fd00:65::/48"]["nat_outgoing"], timeout=15, what="NAT66 on")
        seen = received(lab, ("outside", None), OUTSIDE4, WEB1)
        assert seen.source == "10.0.0.111" and 30000 <= seen.port <= 30009, seen
        assert answered(lab, WEB1, OUTSIDE4) == 3
        assert answered(lab, WEB1, OUTSIDE6) == 3
        assert received(lab, ("outside", None), OUTSIDE6, WEB1).source == "fd00:0:0:1::11"
        assert received(lab, ("h2", "web1"), h2_web1, WEB1).source == web1_v4  # still not NATed

        # an exclusion keeps the container's address (and this outside cannot answer it)
        reload_with(
            lab,
            config,
            'pools:\n  - {cidr: 10.65.0.0/16, nat_outgoing_exclude: [10.200.0.0/24]}\n  - "fd00:65::/48"\n',
        )
        wait_until(lambda: nat_status(lab, "h1")["10.65.0.0/16"]["exclude"], ["10.200.0.0/24"], timeout=15)
        assert received(lab, ("outside", None), OUTSIDE4, WEB1).source == web1_v4
        assert answered(lab, WEB1, OUTSIDE4) == 0

        # NAT off: the outside sees the container and cannot answer it
        reload_with(
            lab, config, 'pools:\n  - {cidr: 10.65.0.0/16, nat_outgoing: false}\n  - "fd00:65::/48"\n'
        )
        wait_until(lambda: nat_status(lab, "h1")["10.65.0.0/16"]["nat_outgoing"], False, timeout=15)
        assert received(lab, ("outside", None), OUTSIDE4, ("h1", "web2")).source == address_of(
            lab, "h1", "web2", 4
        )
        assert answered(lab, ("h1", "web2"), OUTSIDE4) == 0
        assert "masquerade" not in lab.exec("h1", "nft", "list", "table", "inet", "routed").stdout

        # routed stops: the table stays (so do the workloads); --withdraw takes it away
        lab.exec("h1", "routed", "stop")
        assert "table inet routed" in lab.exec("h1", "nft", "list", "tables").stdout
        lab.start("h1")
        wait_until(lambda: status(lab, "h1")["firewall"]["replaced"] >= 1, timeout=30, what="h1 back")
        lab.exec("h1", "routed", "stop", "--withdraw")
        assert "table inet routed" not in lab.exec("h1", "nft", "list", "tables").stdout


@pytest.mark.long(25)
def test_docker_bridge_and_published_ports_work_beside_routed_nat(image: Path) -> None:
    with (
        lab_variant("outside", {}, jumbo_fabric()) as topology,
        running_lab(topology) as lab,
        dockerd_in(lab, ("h1",), image),
    ):
        wait_until(
            lambda: answered(lab, WEB1, OUTSIDE4, 1), 1, timeout=60, what="h1's web1 reaches the outside"
        )
        # Docker's own bridge network, with a published port, on the host routed NATs on
        docker(
            lab,
            "h1",
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "8080:8080",
            "bb:latest",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/etc",
        )
        wait_until(
            lambda: (
                lab.exec(
                    "h2",
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "http://10.0.0.11:8080/hostname",
                    check=False,
                ).stdout
            ),
            "200",
            timeout=30,
            what="h2 reaches the Docker bridge container's published port on h1",
        )
        # a container on routed's network reaches the outside NATed, Docker's tables beside ours
        docker(lab, "h1", *ROUTED_NET, "rnet")
        out = docker(
            lab, "h1", "run", "--rm", "--network", "rnet", "bb:latest", "ping", "-c", "3", "-W", "1", OUTSIDE4
        )
        assert "3 packets received" in out.stdout, out.stdout
        # a Docker container on routed's network gets the (jumbo) fabric's MTU too
        mtu = docker(
            lab, "h1", "run", "--rm", "--network", "rnet", "bb:latest", "cat", "/sys/class/net/eth0/mtu"
        )
        assert mtu.stdout.strip() == "9000"
        tables = lab.exec("h1", "nft", "list", "tables").stdout
        assert "table inet routed" in tables and "table ip nat" in tables and "table ip filter" in tables
        # Docker's rules are Docker's: a resync of ours leaves them as they were
        before = lab.exec("h1", "nft", "list", "table", "ip", "nat").stdout
        lab.exec("h1", "nft", "delete", "table", "inet", "routed")
        wait_until(lambda: "table inet routed" in lab.exec("h1", "nft", "list", "tables").stdout, timeout=15)
        assert lab.exec("h1", "nft", "list", "table", "ip", "nat").stdout == before
        assert lab.exec("h2", "curl", "-s", "http://10.0.0.11:8080/hostname", check=False).returncode == 0


def jumbo_fabric() -> dict[str, list[tuple[str, str]]]:
    """labs/outside with its fabric at 9000 bytes and the router's uplink to the outside at 1400."""
    edits = [
        (
            f"        - ip link set eth{i} master br0",
            f"        - ip link set eth{i} mtu 9000\n        - ip link set eth{i} master br0",
        )
        for i in range(1, 5)
    ]
    for address in ("10.0.0.1/24", "10.0.0.11/24", "10.0.0.12/24"):
        edits.append(
            (
                f"        - ip addr add {address} dev eth1\n",
                f"        - ip link set eth1 mtu 9000\n        - ip addr add {address} dev eth1\n",
            )
        )
    edits.append(
        (
            "        - ip addr add 10.0.0.254/24 dev eth1\n",
            "        - ip link set eth1 mtu 9000\n        - ip link set eth2 mtu 1400\n        - ip addr add 10.0.0.254/24 dev eth1\n",
        )
    )
    edits.append(
        (
            "        - ip addr add 10.200.0.2/24 dev eth1\n",
            "        - ip link set eth1 mtu 1400\n        - ip addr add 10.200.0.2/24 dev eth1\n",
        )
    )
    return {"outside.clab.yml": edits}


def mtu_in(lab: Lab, node: str, netns: str) -> int:
    return int(lab.exec(node, "ip", "netns", "exec", netns, "cat", "/sys/class/net/eth0/mtu").stdout)


@pytest.mark.long(20)
def test_workloads_take_the_fabric_mtu_and_tcp_finds_the_path_mtu() -> None:
    with lab_variant("outside", {}, jumbo_fabric()) as topology, running_lab(topology) as lab:
        h2_web1 = address_of(lab, "h2", "web1", 4)
        wait_until(lambda: answered(lab, WEB1, h2_web1, 1), 1, timeout=60, what="BGP: h1's web1 reaches h2's")
        # a jumbo fabric: the containers get 9000 without being told, and 8,000 bytes cross
        # hosts unfragmented (DF set)
        assert mtu_in(lab, *WEB1) == mtu_in(lab, "h2", "web1") == 9000
        assert status(lab, "h1")["mtu"] == {"workloads": 9000, "source": "fabric eth1", "fabric": 9000}
        assert ping_from(lab, *WEB1, "-M", "do", "-s", "8000", "-c", "3", "-W", "1", h2_web1) == 3
        # beyond the router the path is 1400: a TCP stream out through NAT finds it (the
        # router's "fragmentation needed" comes back through conntrack to the container)
        size = 2_000_000
        seen = received(lab, ("outside", None), OUTSIDE4, WEB1, kind="tcp", size=size)
        assert (seen.source, seen.size) == ("10.0.0.11", size), seen

        # the fabric shrinks to 1400 under running containers (still at 9000): TCP between
        # them finds the path MTU from the host's own "fragmentation needed", no black hole
        for node, links in {
            "sw": ("eth1", "eth2", "eth3", "eth4"),
            "rr1": ("eth1",),
            "h1": ("eth1",),
            "h2": ("eth1",),
            "gw": ("eth1",),
        }.items():
            for link in links:
                lab.exec(node, "ip", "link", "set", link, "mtu", "1400")
        seen = received(lab, ("h2", "web1"), h2_web1, WEB1, kind="tcp", size=size)
        assert seen.size == size, seen
        # a reload takes the new fabric MTU to every workload, both ends of its veth
        for node in ("h1", "h2"):
            lab.exec(node, "routed", "reload")
        wait_until(lambda: (mtu_in(lab, *WEB1), mtu_in(lab, "h2", "web1")), (1400, 1400), timeout=15)
        veths = lab.exec("h1", "ip", "-o", "link", "show", "type", "veth").stdout
        assert all(" mtu 1400 " in line for line in veths.splitlines() if ": rt" in line), veths
        assert ping_from(lab, *WEB1, "-M", "do", "-s", "1372", "-c", "3", "-W", "1", h2_web1) == 3
        seen = received(lab, ("h2", "web1"), h2_web1, WEB1, kind="tcp", size=size)
        assert seen.size == size, seen
        # a node's mtu: wins over the fabric's, for workloads added after it
        config = topology.parent / "outside" / "h1.yaml"
        config.write_text(config.read_text() + "mtu: 1300\n")
        lab.exec("h1", "routed", "reload")
        lab.exec("h1", "ip", "netns", "add", "web3")
        lab.exec("h1", "routed", "workload", "add", "h1-web3", "--netns", "web3")
        assert mtu_in(lab, "h1", "web3") == 1300 and mtu_in(lab, *WEB1) == 1300
        assert status(lab, "h1")["mtu"] == {"workloads": 1300, "source": "mtu:", "fabric": 1400}

        # Docker sets iptables' FORWARD policy to drop when it starts before routed: said, not fixed
        assert status(lab, "h1")["firewall"]["forward_drops"] == []
        lab.exec("h1", "iptables", "-P", "FORWARD", "DROP")
        wait_until(lambda: status(lab, "h1")["firewall"]["forward_drops"], ["ip filter FORWARD"], timeout=15)
        assert (
            "WARNING: ip filter FORWARD drops forwarded packets" in lab.exec("h1", "routed", "status").stdout
        )
        lab.exec("h1", "iptables", "-P", "FORWARD", "ACCEPT")
