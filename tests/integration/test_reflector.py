"""The route reflector layer, from labs: reflection, redundancy, eBGP to a ToR, BIRD2 both ways."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import pytest

from bgp import procfs
from tests.lab import Lab, running_lab
from tests.netns import wait_until
from tests.support.fabric import kernel_routes, pids_in, ping, route_to, sessions_up, status

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

QUICKSTART = {
    "h1": {"web1": "10.65.1.1", "web2": "10.65.1.2"},
    "h2": {"web1": "10.65.2.1", "web2": "10.65.2.2"},
    "h3": {"web1": "10.65.3.1", "web2": "10.65.3.2"},
}


def bgp_sockets(lab: Lab, node: str) -> list[str]:
    """Remote ends of the node's established TCP sessions on port 179, from the kernel."""
    out = subprocess.run(
        ["ip", "netns", "exec", lab.netns(node), "ss", "-Htn", "state", "established"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    peers = []
    for line in out.splitlines():
        local, remote = line.split()[-2:]
        if local.endswith(":179") or remote.endswith(":179"):
            peers.append(remote.rsplit(":", 1)[0])
    return sorted(peers)


def any_process(needle: str) -> bool:
    return bool(procfs.matching(needle))


def test_one_reflector_three_nodes() -> None:
    with running_lab("quickstart") as lab:
        for node in QUICKSTART:
            expected = {f"10.65.{other[1]}.0/26" for other in QUICKSTART if other != node}
            wait_until(
                lambda n=node, e=expected: e <= set(kernel_routes(lab, n)),
                timeout=30,
                what=f"{node} learns the others' blocks through rr1",
            )
        for src, dst in [("h1", "h2"), ("h2", "h3"), ("h3", "h1")]:
            for ns in QUICKSTART[src]:
                for ip in QUICKSTART[dst].values():
                    wait_until(
                        lambda s=src, n=ns, i=ip: ping(lab, s, n, i), timeout=10, what=f"{src}/{ns} -> {ip}"
                    )
        # reflection attributes, as `routed routes --json` shows them on a node
        shown = {r["dst"]: r for r in json.loads(lab.exec("h1", "routed", "routes", "--json").stdout)}
        learned = shown["10.65.2.0/26"]
        assert learned["source"] == "bgp" and learned["peer"] == "10.0.0.1"
        assert learned["originator_id"] == "10.0.0.12"
        assert learned["cluster_list"] == ["10.0.0.1"]  # rr1's cluster id defaults to its router id
        assert learned["nexthops"] == [{"gateway": "10.0.0.12"}]  # next hop unchanged by the reflector
        # nodes peer only with the reflector: in routed's session list and in the kernel's sockets
        for node in QUICKSTART:
            assert [p["address"] for p in status(lab, node)["bgp"]["peers"]] == ["10.0.0.1"]
            assert sessions_up(lab, node) == ["10.0.0.1"]
            assert bgp_sockets(lab, node) == ["10.0.0.1"]
        assert sessions_up(lab, "rr1") == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
        # the reflector hosts no workloads, so it programs no FIB
        assert kernel_routes(lab, "rr1") == {}
        # a /32 outside h3's block is announced and withdrawn through the reflector
        lab.exec("h3", "ip", "netns", "add", "extra")
        lab.exec("h3", "routed", "workload", "add", "extra", "--netns", "extra", "--ip", "10.65.3.100")
        for node in ("h1", "h2"):
            wait_until(lambda n=node: kernel_routes(lab, n).get("10.65.3.100"), "10.0.0.13", timeout=10)
        lab.exec("h3", "routed", "workload", "del", "extra")
        for node in ("h1", "h2"):
            wait_until(lambda n=node: "10.65.3.100" in kernel_routes(lab, n), False, timeout=10)


def test_losing_a_reflector_loses_no_packet() -> None:
    with running_lab("dual-rr") as lab:
        wait_until(lambda: route_to(lab, "h1", "10.65.2.1"), "10.0.0.12", timeout=30)
        wait_until(lambda: route_to(lab, "h2", "10.65.1.1"), "10.0.0.11", timeout=30)
        wait_until(
            lambda: sorted(p["address"] for p in status(lab, "h1")["bgp"]["peers"] if p["received"]),
            ["10.0.0.1", "10.0.0.2"],
            timeout=30,
            what="h1 learns from both reflectors",
        )
        result: dict[str, str] = {}

        def continuous_ping() -> None:
            result["out"] = lab.exec(
                "h1",
                "ip",
                "netns",
                "exec",
                "web",
                "ping",
                "-i",
                "0.01",
                "-c",
                "800",
                "-W",
                "1",
                "10.65.2.1",
                check=False,
                timeout=60,
            ).stdout

        pinger = threading.Thread(target=continuous_ping)
        pinger.start()
        wait_until(lambda: any_process("ping -i 0.01 -c 800"), timeout=10, what="the ping runs")
        threading.Event().wait(1)  # let it run a while over the intact topology
        (rr1,) = pids_in(lab.netns("rr1"), "routed run")
        os.kill(rr1, signal.SIGKILL)
        wait_until(lambda: sessions_up(lab, "h1"), ["10.0.0.2"], timeout=30, what="h1 sees rr1 gone")
        pinger.join(timeout=60)
        assert " 800 received, 0% packet loss" in result["out"], result["out"]
        for node, prefix, via in (
            ("h1", "10.65.2.1", "10.0.0.12"),
            ("h2", "10.65.1.1", "10.0.0.11"),
            ("h3", "10.65.4.1", "10.0.0.14"),
        ):
            assert route_to(lab, node, prefix) == via
        shown = {r["dst"]: r for r in json.loads(lab.exec("h1", "routed", "routes", "--json").stdout)}
        assert shown["10.65.2.0/26"]["peer"] == "10.0.0.2"


def test_ebgp_to_bird_top_of_rack() -> None:
    with running_lab("tor-ebgp") as lab:
        wait_until(
            lambda: kernel_routes(lab, "h1").get("10.65.4.1"),
            "10.1.1.0",
            timeout=40,
            what="h1 learns rack 2's workload via its ToR",
        )
        wait_until(lambda: ping(lab, "h1", "web", "10.65.4.1"), timeout=10)
        wait_until(lambda: ping(lab, "h4", "web", "10.65.2.1"), timeout=10)
        shown = {r["dst"]: r for r in json.loads(lab.exec("h1", "routed", "routes", "--json").stdout)}
        assert shown["10.65.4.1/32"]["as_path"] == [65001, 65000, 65002, 64622]
        route = lab.birdc("spine", "show", "route", "10.65.1.1/32", "all")
        assert "BGP.as_path: 65001 64611" in route


def test_routed_clients_of_a_bird_reflector() -> None:
    with running_lab("bird-rr") as lab:
        wait_until(lambda: kernel_routes(lab, "h1").get("10.65.2.1"), "10.0.0.12", timeout=30)
        wait_until(lambda: kernel_routes(lab, "h2").get("10.65.1.1"), "10.0.0.11", timeout=30)
        shown = {r["dst"]: r for r in json.loads(lab.exec("h1", "routed", "routes", "--json").stdout)}
        assert shown["10.65.2.1/32"]["originator_id"] == "10.0.0.12"
        assert shown["10.65.2.1/32"]["cluster_list"] == ["10.0.0.254"]
        wait_until(lambda: ping(lab, "h1", "web", "10.65.2.1"), timeout=10)


def test_bird_clients_of_a_routed_reflector() -> None:
    with running_lab("bird-clients") as lab:
        # BIRD -> routed reflector -> BIRD, with RFC 4456 attributes as BIRD reads them
        wait_until(lambda: "10.65.22.1/32" in lab.birdc("b1", "show", "route"), timeout=30)
        route = lab.birdc("b1", "show", "route", "10.65.22.1/32", "all")
        assert "BGP.originator_id: 10.0.0.22" in route and "BGP.cluster_list: 10.0.0.254" in route
        assert "via 10.0.0.22" in route
        # routed host -> routed reflector -> BIRD, and BIRD -> reflector -> routed host
        wait_until(lambda: "10.65.1.1/32" in lab.birdc("b2", "show", "route"), timeout=30)
        wait_until(lambda: kernel_routes(lab, "h1").get("10.65.21.1"), "10.0.0.21", timeout=30)
        # the reflector never reflects a route back to where it came from
        assert "10.65.21.1/32" not in lab.birdc("b1", "show", "route", "protocol", "rr1")
