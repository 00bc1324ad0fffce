"""Dual stack across hosts (issue 27): every container's /32 and /128 reaches every other host,
on a dual-stack fabric (each family over its own sessions) and on an IPv6-only fabric (IPv4 over
the IPv6 sessions with IPv6 next hops, RFC 8950). Pings counted in the target container's
kernel; no tunnel device anywhere."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bench import truth
from routed.lab.topology import load_topology
from tests.lab import Lab, lab_variant, running_lab
from tests.netns import wait_until
from tests.support.etcd import ETCD_IPAM, ETCD_ON_RR1
from tests.support.fabric import daemon_pid, kernel_routes, peer_of, route_to, status
from tests.support.runtimes import ROUTED_NET, docker, dockerd_in, podman
from tests.traffic import PingStream, echoes, kill_and_wait, lost, total_lost

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

HOSTS = ("h1", "h2", "h3")
V4_FABRIC = {"h1": "10.0.0.11", "h2": "10.0.0.12", "h3": "10.0.0.13"}
V6_FABRIC = {"h1": "fd00:0:0:1::11", "h2": "fd00:0:0:1::12", "h3": "fd00:0:0:1::13"}
TUNNELS = {"vxlan", "ipip", "gre", "geneve", "sit", "wireguard", "ip6tnl", "ip6gre"}
COUNT = 5


def workloads(lab: Lab, node: str) -> list[dict[str, Any]]:
    return list(json.loads(lab.exec(node, "routed", "workload", "list", "--json").stdout))


def address_of(workload: dict[str, Any], version: int) -> str:
    (address,) = [ip for ip in workload["ips"] if (":" in ip) == (version == 6)]
    return str(address)


def containers(lab: Lab) -> list[tuple[str, str, dict[int, str]]]:
    """(host, container netns, {4: its IPv4 address, 6: its IPv6 address}) of every container."""
    return [
        (node, w["netns"], {4: address_of(w, 4), 6: address_of(w, 6)})
        for node in HOSTS
        for w in workloads(lab, node)
    ]


def learned_all(
    lab: Lab, found: list[tuple[str, str, dict[int, str]]], gateways: dict[int, dict[str, str]]
) -> bool:
    """Every host routes every other host's containers, each family via `gateways[family][host]`."""
    return all(
        route_to(lab, node, ips[version]) == gateways[version][owner]
        for node in HOSTS
        for owner, _, ips in found
        if owner != node
        for version in (4, 6)
    )


def cross_host_pings(lab: Lab, found: list[tuple[str, str, dict[int, str]]]) -> dict[str, tuple[int, int]]:
    """Every ordered pair of containers on different hosts, each family: (answered, arrived)."""
    results = {}
    for (src_node, src, src_ips), (dst_node, dst, dst_ips) in itertools.permutations(found, 2):
        if src_node == dst_node:
            continue
        for version in (4, 6):
            pair = f"{src_node}/{src} -> {dst_node}/{dst} IPv{version}"
            results[pair] = echoes(
                lab, (src_node, src), (dst_node, dst), dst_ips[version], COUNT, src_ips[version]
            )
    return results


def tunnels(lab: Lab) -> list[str]:
    found = []
    for node in ("rr1", *HOSTS):
        links = json.loads(lab.exec(node, "ip", "-d", "-j", "link", "show").stdout)
        found += [
            f"{node}:{link['ifname']}"
            for link in links
            if link.get("linkinfo", {}).get("info_kind") in TUNNELS
        ]
    return found


def sessions_up(lab: Lab, node: str) -> set[str]:
    return {p["address"] for p in status(lab, node)["bgp"]["peers"] if p["state"] == "up"}


def check_fabric(lab: Lab, gateways: dict[int, dict[str, str]], peers: dict[str, set[str]]) -> None:
    for node, expected in peers.items():
        wait_until(lambda n=node: sessions_up(lab, n), expected, timeout=40, what=f"{node}'s sessions")
    found = containers(lab)
    assert len(found) == 6, found
    wait_until(
        lambda: learned_all(lab, found, gateways), timeout=40, what="every host routes every container"
    )
    results = cross_host_pings(lab, found)
    assert len(results) == 2 * 6 * 4, results  # 24 ordered pairs on different hosts, both families
    failed = {pair: counts for pair, counts in results.items() if counts != (COUNT, COUNT)}
    assert not failed, failed
    assert tunnels(lab) == []
    # the truth check agrees, both families: every block and workload where it should be, no more
    topo = load_topology(lab.file, name=lab.name, prefix=lab.prefix)
    assert [str(d) for d in truth.check(topo).differences] == []
    # each family counted apart: its own block announced, the two others' blocks learned
    one_block_each = {"loc_rib": 2, "stale": 0, "announced": 1}
    families = status(lab, "h1")["bgp"]["families"]
    assert families == {"ipv4 unicast": one_block_each, "ipv6 unicast": one_block_each}, families


@pytest.mark.long(40)
def test_dual_stack_fabric_carries_both_families_over_their_own_sessions() -> None:
    with running_lab("dual-stack") as lab:
        clients = {*V4_FABRIC.values(), *V6_FABRIC.values()}
        peers = {"rr1": clients, **{h: {"10.0.0.1", "fd00:0:0:1::1"} for h in HOSTS}}
        check_fabric(lab, {4: V4_FABRIC, 6: V6_FABRIC}, peers)


@pytest.mark.long(40)
def test_ipv6_only_fabric_carries_ipv4_with_ipv6_next_hops() -> None:
    with running_lab("v6-underlay") as lab:
        peers = {"rr1": set(V6_FABRIC.values()), **{h: {"fd00:0:0:1::1"} for h in HOSTS}}
        # IPv4 routes are installed `via inet6 <the host's fabric address>` (RTA_VIA)
        check_fabric(lab, {4: V6_FABRIC, 6: V6_FABRIC}, peers)
        assert "via inet6 fd00:0:0:1::12" in lab.exec("h1", "ip", "route", "show", "10.65.2.0/26").stdout


@pytest.mark.long(60)
def test_restarts_lose_no_ipv6_packet() -> None:
    """Graceful restart per family: a host's daemon and then the reflector restart under ping
    streams over IPv6 (and one over IPv4 beside them); every packet is counted."""
    with running_lab("dual-stack") as lab:
        found = containers(lab)
        gateways = {4: V4_FABRIC, 6: V6_FABRIC}
        wait_until(
            lambda: learned_all(lab, found, gateways), timeout=40, what="every host routes every container"
        )
        targets = {(node, netns): ips for node, netns, ips in found}
        for event, node, sig in (
            ("h1 restarts", "h1", signal.SIGTERM),
            ("rr1 crashes", "rr1", signal.SIGKILL),
        ):
            streams = [
                PingStream(lab, "h2", "web1", targets[("h1", "web1")][6], 12).start(),
                PingStream(lab, "h3", "web2", targets[("h1", "web2")][6], 12).start(),
                PingStream(lab, "h1", "web1", targets[("h3", "web1")][6], 12).start(),
                PingStream(lab, "h2", "web2", targets[("h1", "web1")][4], 12).start(),
            ]
            time.sleep(2)
            kill_and_wait(daemon_pid(lab, node), sig)
            lab.start(node)
            counts = lost(streams)
            assert total_lost(counts) == 0, (event, counts)
            assert all(sent == 240 for sent, _ in counts.values()), counts
            wait_until(lambda n=node: sessions_up(lab, n) != set(), timeout=40, what=f"{node} back")


@pytest.mark.long(40)
def test_bfd_over_ipv6_withdraws_a_frozen_host_at_once() -> None:
    """BFD (50 ms x 3) on h1's IPv6 session with rr1 only: h1 frozen whole, rr1 withdraws h1's
    IPv6 block from the other hosts at once, while its IPv4 block (no BFD there) waits for the
    hold time: one family's detection, not the other's."""
    bfd = ", bfd: {interval_ms: 50, multiplier: 3}}"
    h1_v6 = '  - {address: "fd00:0:0:1::11", kind: client}'
    rr1_v6 = '  - {address: "fd00:0:0:1::1", kind: reflector}'
    edits = {
        "dual-stack/rr1.yaml": [(h1_v6, h1_v6.removesuffix("}") + bfd)],
        "dual-stack/h1.yaml": [(rr1_v6, rr1_v6.removesuffix("}") + bfd)],
    }
    with lab_variant("dual-stack", {}, edits) as topology, running_lab(topology) as lab:
        block4, block6 = "10.65.1.0/26", "fd00:65:0:1::/122"
        wait_until(lambda: kernel_routes(lab, "h2", 6).get(block6), V6_FABRIC["h1"], timeout=40)
        wait_until(lambda: peer_of(lab, "rr1", V6_FABRIC["h1"])["bfd"], "up", timeout=20, what="BFD up")
        assert peer_of(lab, "rr1", V4_FABRIC["h1"])["bfd"] is None
        pids = [
            int(p)
            for p in subprocess.run(
                ["ip", "netns", "pids", lab.netns("h1")], capture_output=True, text=True
            ).stdout.split()
        ]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            wait_until(
                lambda: kernel_routes(lab, "h2", 6).get(block6), None, timeout=10, what="h1's /122 withdrawn"
            )
            print(
                f"h1's /122 left h2's kernel {(time.monotonic() - frozen_at) * 1000:.0f} ms after the freeze"
            )
            assert "event=bfd_down" in lab.log("rr1") and "detection_time_expired" in lab.log("rr1")
            assert kernel_routes(lab, "h2").get(block4) == V4_FABRIC["h1"]  # the IPv4 session has no BFD
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        wait_until(lambda: kernel_routes(lab, "h2", 6).get(block6), V6_FABRIC["h1"], timeout=40, what="back")


@pytest.mark.long(30)
def test_tcp_md5_over_ipv6() -> None:
    """The IPv6 sessions signed with TCP-MD5 (RFC 2385) come up and carry routes; a wrong key on
    one side keeps that session down, with the hint that says why."""
    h1_v6 = '  - {address: "fd00:0:0:1::11", kind: client}'
    h2_v6 = '  - {address: "fd00:0:0:1::12", kind: client}'
    rr1_v6 = '  - {address: "fd00:0:0:1::1", kind: reflector}'
    signed = ", password: s3cret}"
    edits = {
        "dual-stack/rr1.yaml": [
            (h1_v6, h1_v6.removesuffix("}") + signed),
            (h2_v6, h2_v6.removesuffix("}") + signed),
        ],
        "dual-stack/h1.yaml": [(rr1_v6, rr1_v6.removesuffix("}") + signed)],
        "dual-stack/h2.yaml": [(rr1_v6, rr1_v6.removesuffix("}") + ", password: wrong}")],
    }
    with lab_variant("dual-stack", {}, edits) as topology, running_lab(topology) as lab:
        wait_until(lambda: kernel_routes(lab, "h3", 6).get("fd00:65:0:1::/122"), V6_FABRIC["h1"], timeout=40)
        assert peer_of(lab, "h1", "fd00:0:0:1::1")["state"] == "up"
        wait_until(lambda: peer_of(lab, "h2", "fd00:0:0:1::1")["hint"] != "", timeout=60, what="h2's hint")
        assert peer_of(lab, "h2", "fd00:0:0:1::1")["state"] != "up"
        assert "TCP-MD5" in peer_of(lab, "h2", "fd00:0:0:1::1")["hint"]
        assert peer_of(lab, "h2", "10.0.0.1")["state"] == "up"  # its IPv4 session is unsigned and up


@pytest.mark.long(40)
def test_bird_and_frr_exchange_both_families_with_extended_next_hop() -> None:
    """labs/v6-interop.clab.yml, an IPv6-only fabric: BIRD2 reflects both families between two
    routed hosts and an FRR client, every session IPv6, IPv4 with IPv6 next hops (RFC 8950)."""
    web = {"h1": ("10.65.1.1", "fd00:65:0:1::1"), "h2": ("10.65.2.1", "fd00:65:0:2::1")}
    frr_web = ("10.65.8.1", "fd00:65:0:8::1")
    with running_lab("v6-interop") as lab:
        # routed learns through BIRD: the other host's blocks, and FRR's container (its IPv4
        # route with the next hop FRR sent, its link-local address, on the fabric interface)
        wait_until(
            lambda: route_to(lab, "h1", "10.65.2.1"), "fd00:0:0:1::12", timeout=40, what="h2's IPv4 block"
        )
        wait_until(lambda: route_to(lab, "h1", frr_web[1]), "fd00:0:0:1::41", timeout=40, what="FRR's /128")
        wait_until(lambda: route_to(lab, "h1", frr_web[0]) is not None, timeout=40, what="FRR's /32")
        assert "via inet6" in lab.exec("h1", "ip", "route", "show", f"{frr_web[0]}/32").stdout
        # FRR learns routed's blocks through BIRD, and installs the IPv4 one via inet6
        frr_routes = lab.exec("frr1", "ip", "route", "show", "10.65.1.0/26").stdout
        wait_until(
            lambda: (
                "via inet6 fd00:0:0:1::11" in lab.exec("frr1", "ip", "route", "show", "10.65.1.0/26").stdout
            ),
            timeout=40,
            what=f"FRR routes h1's IPv4 block via h1's IPv6 address ({frr_routes!r})",
        )
        assert (
            "fd00:0:0:1::11"
            in lab.exec("frr1", "vtysh", "-c", "show bgp ipv6 unicast fd00:65:0:1::/122").stdout
        )
        pairs = [
            (("h1", "web"), ("h2", "web"), web["h2"], web["h1"]),
            (("h1", "web"), ("frr1", "web"), frr_web, web["h1"]),
            (("frr1", "web"), ("h2", "web"), web["h2"], frr_web),
        ]
        for sender, target, to, source in pairs:
            for family in (0, 1):
                got = echoes(lab, sender, target, to[family], COUNT, source[family])
                assert got == (COUNT, COUNT), (sender, target, to[family], got)
        assert "Established" in lab.birdc("brr", "show", "protocols", "frr1")
        # both reflect to h1 (FRR is its second reflector, of another cluster): h1's own routes
        # come back to it through the two and are refused as loops, and are no address conflict
        assert status(lab, "h1")["bgp"]["conflicts"]["current"] == 0, status(lab, "h1")["bgp"]["conflicts"]
        # FRR alone reflects both families (BIRD's session with h1 shut): h1 still reaches h2
        lab.birdc("brr", "disable", "h1")

        def from_frr(prefix: str) -> bool:
            routes = json.loads(lab.exec("h1", "routed", "routes", "--json", "--prefix", prefix).stdout)
            return bool(routes) and routes[0].get("peer") == "fd00:0:0:1::41" and routes[0].get("paths") == 1

        for prefix in ("10.65.2.0/26", "fd00:65:0:2::/122"):
            wait_until(lambda p=prefix: from_frr(p), timeout=30, what=f"{prefix} through FRR alone")
        for family in (0, 1):
            got = echoes(lab, ("h1", "web"), ("h2", "web"), web["h2"][family], COUNT, web["h1"][family])
            assert got == (COUNT, COUNT), ("through FRR", family, got)


@pytest.mark.long(40)
def test_ipam_in_etcd_hands_out_ipv6_blocks_that_reach_across_hosts() -> None:
    """IPAM in etcd mode (one member on rr1) on the dual-stack lab: h1 and h2 each claim an IPv4
    and an IPv6 block, and their containers reach each other over IPv6 through those blocks."""
    edits = {
        "dual-stack.clab.yml": [
            (
                "        - ip -6 addr add fd00:0:0:1::1/64 dev eth1 nodad\n",
                f"        - ip -6 addr add fd00:0:0:1::1/64 dev eth1 nodad\n        - {ETCD_ON_RR1}\n",
            )
        ],
        **{
            f"dual-stack/h{n}.yaml": [
                (f'ipam: {{mode: static, blocks: [10.65.{n}.0/26, "fd00:65:0:{n}::/122"]}}', ETCD_IPAM)
            ]
            for n in (1, 2)
        },
    }
    with lab_variant("dual-stack", {}, edits) as topology, running_lab(topology) as lab:
        blocks = {
            n: {b["block"] for b in json.loads(lab.exec(n, "routed", "ipam", "--json").stdout)["blocks"]}
            for n in ("h1", "h2")
        }
        assert all(len(b) == 2 and any(":" in x for x in b) for b in blocks.values()), blocks
        claimed = lab.exec(
            "rr1", "etcdctl", "--endpoints", "10.0.0.1:2379", "get", "--prefix", "/routed/ipam/v1/blocks/"
        ).stdout
        assert sum(":" in line for line in claimed.splitlines()[::2]) == 2, claimed  # one IPv6 block each
        (h1_web,) = [w for w in workloads(lab, "h1") if w["id"] == "h1-web1"]
        (h2_web,) = [w for w in workloads(lab, "h2") if w["id"] == "h2-web1"]
        h1_block6 = next(b for b in blocks["h1"] if ":" in b)
        wait_until(
            lambda: kernel_routes(lab, "h2", 6).get(h1_block6),
            V6_FABRIC["h1"],
            timeout=30,
            what="h1's IPv6 block on h2",
        )
        got = echoes(lab, ("h2", "web1"), ("h1", "web1"), address_of(h1_web, 6), COUNT, address_of(h2_web, 6))
        assert got == (COUNT, COUNT), got


@pytest.mark.long(60)
def test_a_podman_and_a_docker_container_on_two_hosts_reach_each_other_over_ipv6(
    image: Path, podman_files: Path
) -> None:
    """The dual-stack lab with Docker on h1 and podman on h2: each runtime's container gets an
    address of each family from its host's blocks, and the two ping each other over IPv6."""
    with (
        lab_variant("dual-stack", {"h1.yaml": "docker: true"}) as topology,
        running_lab(topology) as lab,
        dockerd_in(lab, ("h1",), image),
    ):
        docker(lab, "h1", *ROUTED_NET, "--ipv6", "rnet")
        docker(lab, "h1", "run", "-d", "--name", "d1", "--network", "rnet", "bb:latest", "sleep", "600")
        inside = docker(lab, "h1", "exec", "d1", "ip", "-6", "addr", "show", "eth0").stdout
        d1 = next(w.split()[1].split("/")[0] for w in inside.splitlines() if "inet6 fd00:65:0:1::" in w)
        lab.exec(
            "h2", "routed", "cni", "install", "--bin-dir", "/tmp/cni/bin", "--conf-dir", "/tmp/cni/net.d"
        )
        podman(lab, "h2", podman_files, "import", str(podman_files / "bb.tar"), "localhost/bb:latest")
        podman(
            lab,
            "h2",
            podman_files,
            "run",
            "-d",
            "--name",
            "p2",
            "--network",
            "routed",
            "localhost/bb:latest",
            "sleep",
            "600",
        )
        networks = json.loads(
            podman(
                lab, "h2", podman_files, "inspect", "p2", "--format", "{{json .NetworkSettings.Networks}}"
            ).stdout
        )
        p2 = networks["routed"]["GlobalIPv6Address"]
        assert p2.startswith("fd00:65:0:2::") and d1.startswith("fd00:65:0:1::"), (p2, d1)
        wait_until(lambda: kernel_routes(lab, "h1", 6).get("fd00:65:0:2::/122"), V6_FABRIC["h2"], timeout=30)
        wait_until(lambda: kernel_routes(lab, "h2", 6).get("fd00:65:0:1::/122"), V6_FABRIC["h1"], timeout=30)
        there = docker(lab, "h1", "exec", "d1", "ping", "-c5", "-i0.2", "-W1", p2, check=False)
        assert " 0% packet loss" in there.stdout, there.stdout + there.stderr
        back = podman(lab, "h2", podman_files, "exec", "p2", "ping", "-c5", "-i0.2", "-W1", d1, check=False)
        assert " 0% packet loss" in back.stdout, back.stdout + back.stderr
        podman(lab, "h2", podman_files, "rm", "-f", "-t", "0", "p2")
