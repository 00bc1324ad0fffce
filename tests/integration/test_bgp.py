"""BGP across hosts, built from labs/*.clab.yml: mesh routing, withdraws, restarts, hijacks, BIRD2."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from bgp.exabgp.process import API_PIPE_BYTES
from tests.lab import Lab, running_lab
from tests.netns import wait_until
from tests.support.fabric import kernel_routes, pids_in, ping, sessions_up, status

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

MESH_WORKLOADS = {
    "h1": {"web1": "10.65.1.1", "web2": "10.65.1.2"},
    "h2": {"web1": "10.65.2.1", "web2": "10.65.2.2"},
    "h3": {"web1": "10.65.3.1", "web2": "10.65.3.2"},
}


def expected_mesh_routes(node: str) -> dict[str, str]:
    routes = {}
    for other, workloads in MESH_WORKLOADS.items():
        if other != node:
            for ip in workloads.values():
                routes[ip] = f"10.0.0.1{other[1]}"
    return routes


def learned(lab: Lab, node: str) -> dict[str, str]:
    return {p: via for p, via in kernel_routes(lab, node).items() if via.startswith("10.0.0.")}


def test_full_mesh_routes_pings_and_no_encapsulation() -> None:
    with running_lab("mesh") as lab:
        for node in MESH_WORKLOADS:
            wait_until(
                lambda n=node: learned(lab, n),
                expected_mesh_routes(node),
                timeout=30,
                what=f"{node} learns every other host's workloads",
            )
        for node in MESH_WORKLOADS:
            others = sorted(a for a in ("10.0.0.11", "10.0.0.12", "10.0.0.13") if a != f"10.0.0.1{node[1]}")
            assert sessions_up(lab, node) == others
        # every workload pings every workload on the other hosts
        pairs = [(a, b) for a, b in itertools.permutations(MESH_WORKLOADS, 2)]
        for src_node, dst_node in pairs:
            for src_ns in MESH_WORKLOADS[src_node]:
                for dst_ip in MESH_WORKLOADS[dst_node].values():
                    wait_until(
                        lambda s=src_node, n=src_ns, d=dst_ip: ping(lab, s, n, d),
                        timeout=10,
                        what=f"{src_node}/{src_ns} pings {dst_ip}",
                    )
        # on the fabric, packets carry the containers' own addresses: no VXLAN, no IP-in-IP
        capture = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                lab.netns("h2"),
                "tcpdump",
                "-l",
                "-n",
                "-v",
                "-i",
                "eth1",
                "-c",
                "2",
                "icmp or udp port 4789 or ip proto 4",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            time.sleep(1)  # tcpdump attaches
            threading.Thread(target=lambda: ping(lab, "h1", "web1", "10.65.2.1"), daemon=True).start()
            out, _ = capture.communicate(timeout=20)
        finally:
            capture.kill()
        assert "10.65.1.1 > 10.65.2.1: ICMP echo request" in out, out
        assert "10.65.2.1 > 10.65.1.1: ICMP echo reply" in out, out
        assert "VXLAN" not in out and "ipip" not in out.lower() and "proto IPIP" not in out


def test_detach_withdraws_everywhere() -> None:
    with running_lab("mesh") as lab:
        for node in ("h2", "h3"):
            wait_until(lambda n=node: "10.65.1.2" in kernel_routes(lab, n), timeout=30)
        lab.exec("h1", "routed", "workload", "del", "h1-web2")
        for node in ("h2", "h3"):
            wait_until(
                lambda n=node: "10.65.1.2" in kernel_routes(lab, n),
                False,
                timeout=10,
                what=f"{node} drops 10.65.1.2",
            )
        assert "10.65.1.1" in kernel_routes(lab, "h2")


def test_exabgp_killed_is_restarted_and_daemon_killed_leaves_no_exabgp() -> None:
    with running_lab("mesh") as lab:
        wait_until(lambda: learned(lab, "h2"), expected_mesh_routes("h2"), timeout=30)
        before = status(lab, "h1")["bgp"]["exabgp"]
        os.kill(before["pid"], signal.SIGKILL)
        wait_until(
            lambda: status(lab, "h1")["bgp"]["exabgp"]["restarts"] >= 1, timeout=20, what="ExaBGP restarted"
        )
        wait_until(lambda: sessions_up(lab, "h1"), ["10.0.0.12", "10.0.0.13"], timeout=30)
        wait_until(lambda: learned(lab, "h1"), expected_mesh_routes("h1"), timeout=30)
        wait_until(lambda: learned(lab, "h2"), expected_mesh_routes("h2"), timeout=30)
        assert "event=exabgp_exited" in lab.log("h1")
        # the channel to the new ExaBGP was opened anew, its pipe to the daemon enlarged again
        (api_process,) = pids_in(lab.netns("h1"), "bin/sleep infinity")
        pipe = os.open(f"/proc/{api_process}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
        try:
            assert fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ) == API_PIPE_BYTES
        finally:
            os.close(pipe)
        # now kill the routed daemon itself, hard: its ExaBGP must not outlive it
        exabgp = pids_in(lab.netns("h1"), "exabgp")
        assert exabgp
        daemons = pids_in(lab.netns("h1"), "routed run")
        assert len(daemons) == 1, [Path(f"/proc/{p}/cmdline").read_bytes() for p in daemons]
        os.kill(daemons[0], signal.SIGKILL)
        wait_until(lambda: pids_in(lab.netns("h1"), "exabgp"), [], timeout=10, what="no ExaBGP left on h1")
        wait_until(
            lambda: pids_in(lab.netns("h1"), "bin/sleep infinity"), [], timeout=10, what="no API process left"
        )
        # SIGTERM stops ExaBGP cleanly, and the daemon with it
        (h2_daemon,) = pids_in(lab.netns("h2"), "routed run")
        os.kill(h2_daemon, signal.SIGTERM)
        wait_until(lambda: pids_in(lab.netns("h2"), "exabgp"), [], timeout=15, what="no ExaBGP left on h2")
        wait_until(lambda: "event=stopped node=h2" in lab.log("h2"), timeout=10)
        assert "event=exabgp_stopped" in lab.log("h2")


def test_malformed_messages_are_dropped_and_the_daemon_carries_on() -> None:
    with running_lab("mesh") as lab:
        wait_until(lambda: learned(lab, "h2"), expected_mesh_routes("h2"), timeout=30)
        (exabgp_pid,) = pids_in(lab.netns("h2"), "bgp.exabgp.launch server")
        # find the pipe ExaBGP writes its JSON into (it is what routed reads) and write junk into it
        target = None
        for fd in Path(f"/proc/{exabgp_pid}/fd").iterdir():
            if int(fd.name) > 2 and os.readlink(fd).startswith("pipe:"):
                flags = int(
                    (Path(f"/proc/{exabgp_pid}/fdinfo") / fd.name).read_text().split("flags:")[1].split()[0],
                    8,
                )
                if flags & os.O_WRONLY:
                    target = fd
        assert target is not None
        junk = [
            b"this is not json\n",
            b'{"type": "update", "neighbor": 42}\n',
            b"[1, 2, 3]\n",
            b'{"exabgp": "5.0.0", "type": "update", "neighbor": {"address": {"peer": "10.0.0.11"}}}\n',
            b'{"exabgp": "5.0.0", "type": "update", "junk": "' + b"x" * (1 << 20) + b'"}\n',  # 1 MB
        ]
        with open(target, "wb") as pipe:  # a pipe takes 64 KiB at a time: write the whole 1 MB
            for line in junk:
                pipe.write(line)
        wait_until(
            lambda: status(lab, "h2")["bgp"]["counters"].get("messages_dropped", 0) >= len(junk), timeout=10
        )
        assert lab.log("h2").count("event=exabgp_message_dropped") >= 3
        # still working: a new workload on h1 reaches h2
        lab.exec("h1", "ip", "netns", "add", "late")
        lab.exec("h1", "routed", "workload", "add", "late", "--netns", "late", "--ip", "10.65.1.99")
        wait_until(lambda: kernel_routes(lab, "h2").get("10.65.1.99"), "10.0.0.11", timeout=10)


def test_bird_interop_and_hijacks_refused() -> None:
    with running_lab("bird-interop") as lab:
        # BIRD -> routed: the legitimate route is installed via bird1
        wait_until(
            lambda: kernel_routes(lab, "h1").get("10.65.9.1"),
            "10.0.0.31",
            timeout=30,
            what="h1 installs BIRD's 10.65.9.1/32",
        )
        # routed -> BIRD: h1's workload is in BIRD's table, learned from h1
        wait_until(
            lambda: "10.65.1.1/32" in lab.birdc("bird1", "show", "route", "protocol", "h1"),
            timeout=30,
            what="BIRD learns h1's workload",
        )
        assert "10.0.0.11" in lab.birdc("bird1", "show", "route", "10.65.1.1/32", "protocol", "h1", "all")
        # hijacks: not installed anywhere, and counted where they arrived
        wait_until(
            lambda: status(lab, "h1")["bgp"]["rejected"],
            {"local workload prefix": 1, "outside pools": 1, "default route": 1},
            timeout=10,
        )
        for node in ("h1", "h2"):
            routes = kernel_routes(lab, node)
            assert "10.99.0.0/24" not in routes and "default" not in routes
        assert kernel_routes(lab, "h1")["10.65.1.1"].startswith("rt")  # still the local veth
        wait_until(lambda: kernel_routes(lab, "h2").get("10.65.1.1"), "10.0.0.11", timeout=20)
        assert "event=bgp_route_rejected" in lab.log("h1")
        # traffic follows: h2's workload reaches h1's, not bird1
        wait_until(lambda: ping(lab, "h2", "web", "10.65.1.1"), timeout=10)
        # the routed routes listing explains a learned route
        shown = json.loads(lab.exec("h1", "routed", "routes", "--json").stdout)
        bird_route = next(r for r in shown if r["dst"] == "10.65.9.1/32")
        assert bird_route["source"] == "bgp" and bird_route["peer"] == "10.0.0.31"
