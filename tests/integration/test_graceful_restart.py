"""Graceful restart from labs: every restart event under counted ping streams loses 0 packets.

Streams run at 20 packets/s between containers on different hosts (h2->h1, h3->h1,
h1->h3 in quickstart) through the whole event; each packet is accounted for by ping's
own summary. The negative cases show routes do go when they must: past the restart
time, on `routed stop --withdraw`, and off a drained host.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.lab import Lab, lab_variant, running_lab
from tests.netns import wait_until
from tests.support.fabric import (
    all_settled,
    daemon_pid,
    kernel_routes,
    peer_of,
    pids_in,
    ping,
    route_to,
    sessions_up,
    settled,
    status,
)
from tests.traffic import PingStream, kill_and_wait, lost, total_lost

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

QUICKSTART = {
    "h1": {"web1": "10.65.1.1", "web2": "10.65.1.2"},
    "h2": {"web1": "10.65.2.1", "web2": "10.65.2.2"},
    "h3": {"web1": "10.65.3.1", "web2": "10.65.3.2"},
}
HOST_ADDRESS = {"h1": "10.0.0.11", "h2": "10.0.0.12", "h3": "10.0.0.13", "h4": "10.0.0.14"}
QUICKSTART_HOSTS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
STREAMS = [("h2", "web1", "10.65.1.1"), ("h3", "web1", "10.65.1.2"), ("h1", "web1", "10.65.3.1")]


def learned_everything(lab: Lab, hosts: dict[str, dict[str, str]]) -> bool:
    for node in hosts:
        for other, workloads in hosts.items():
            if other != node and any(
                route_to(lab, node, ip) != HOST_ADDRESS[other] for ip in workloads.values()
            ):
                return False
    return True


def quickstart_ready(lab: Lab) -> None:
    wait_until(lambda: learned_everything(lab, QUICKSTART), timeout=40, what="quickstart converged")
    for src, _, dst in STREAMS:
        wait_until(lambda s=src, d=dst: ping(lab, s, "web1", d), timeout=10, what=f"{src} -> {dst}")
    nodes = ["rr1", *QUICKSTART]
    wait_until(lambda: settled(lab, nodes), all_settled(nodes), timeout=30, what="all sessions up")


def streams(lab: Lab, seconds: float) -> list[PingStream]:
    return [PingStream(lab, node, netns, dst, seconds).start() for node, netns, dst in STREAMS]


def restart(lab: Lab, node: str, sig: signal.Signals, down_for: float = 2.0) -> None:
    kill_and_wait(daemon_pid(lab, node), sig)
    time.sleep(down_for)
    lab.start(node)


@pytest.mark.long(120)
def test_host_restarts_lose_no_packet() -> None:
    """One lab, four events in turn, each under its own counted streams."""
    nodes = ["rr1", *QUICKSTART]
    with running_lab("quickstart") as lab:
        quickstart_ready(lab)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            running = streams(lab, 10)
            time.sleep(2)
            kill_and_wait(daemon_pid(lab, "h1"), sig)
            # the reflector helps: h1's routes are kept as stale, not withdrawn
            wait_until(
                lambda: peer_of(lab, "rr1", "10.0.0.11")["graceful_restart"]["helper_active"], timeout=10
            )
            assert peer_of(lab, "rr1", "10.0.0.11")["graceful_restart"]["stale"] == 1  # h1's block
            assert route_to(lab, "h2", "10.65.1.1") == "10.0.0.11"
            time.sleep(2)
            lab.start("h1")
            counts = lost(running)
            assert total_lost(counts) == 0, (sig.name, counts)
            wait_until(lambda: settled(lab, nodes), all_settled(nodes), timeout=30, what="no stale left")
            assert learned_everything(lab, QUICKSTART)
        assert "event=bgp_end_of_rib_sent" in lab.log("h1")

        # h1's ExaBGP dies; routed restarts it
        running = streams(lab, 8)
        time.sleep(2)
        kill_and_wait(status(lab, "h1")["bgp"]["exabgp"]["pid"], signal.SIGKILL)
        counts = lost(running)
        assert total_lost(counts) == 0, ("exabgp", counts)
        assert status(lab, "h1")["bgp"]["exabgp"]["restarts"] == 1
        wait_until(lambda: settled(lab, nodes), all_settled(nodes), timeout=30, what="no stale left")

        # h1 restarted twice within its restart time
        running = streams(lab, 14)
        time.sleep(2)
        restart(lab, "h1", signal.SIGKILL, down_for=1)
        wait_until(lambda: sessions_up(lab, "h1"), ["10.0.0.1"], timeout=20, what="h1 back once")
        restart(lab, "h1", signal.SIGKILL, down_for=1)
        counts = lost(running)
        assert total_lost(counts) == 0, ("twice", counts)
        wait_until(lambda: settled(lab, nodes), all_settled(nodes), timeout=30, what="no stale left")
        assert learned_everything(lab, QUICKSTART)


def test_only_reflector_killed_and_restarted_loses_no_packet() -> None:
    with running_lab("quickstart") as lab:
        quickstart_ready(lab)
        running = streams(lab, 10)
        time.sleep(2)
        kill_and_wait(daemon_pid(lab, "rr1"), signal.SIGKILL)
        wait_until(lambda: peer_of(lab, "h2", "10.0.0.1")["graceful_restart"]["helper_active"], timeout=10)
        time.sleep(2)
        lab.start("rr1")
        counts = lost(running)
        assert total_lost(counts) == 0, counts
        nodes = ["rr1", *QUICKSTART]
        wait_until(lambda: settled(lab, nodes), all_settled(nodes), timeout=30, what="no stale left")
        assert learned_everything(lab, QUICKSTART)
        # the reflector rebuilt its table from its clients' End-of-RIBs before sending its own:
        # in the restarted daemon's log, each End-of-RIB to a client follows the other two's
        restarted = lab.log("rr1").rsplit("event=exabgp_started", 1)[1].splitlines()
        received: set[str] = set()
        sent = []
        for line in restarted:
            if "event=bgp_end_of_rib_received" in line and 'family="ipv4 unicast"' in line:
                received.add(line.split("peer=")[1].split()[0])
            if "event=bgp_end_of_rib_sent" in line:
                target = line.split("peer=")[1].split()[0]
                sent.append(target)
                assert set(QUICKSTART_HOSTS) - {target} <= received, (target, received)
        assert sorted(sent) == sorted(QUICKSTART_HOSTS)


def test_host_down_past_its_restart_time_is_withdrawn_after_the_timer() -> None:
    restart_time = 6
    with (
        lab_variant(
            "quickstart", {"h1.yaml": f"bgp: {{graceful_restart: {{restart_time: {restart_time}}}}}"}
        ) as topology,
        running_lab(topology) as lab,
    ):
        quickstart_ready(lab)
        assert peer_of(lab, "rr1", "10.0.0.11")["graceful_restart"]["peer_restart_time"] == restart_time
        kill_and_wait(daemon_pid(lab, "h1"), signal.SIGKILL)
        killed = time.monotonic()
        # kept while the timer runs...
        time.sleep(restart_time - 2)
        for node in ("h2", "h3"):
            assert route_to(lab, node, "10.65.1.1") == "10.0.0.11"
        # ...and withdrawn everywhere right after it
        for node in ("h2", "h3"):
            wait_until(
                lambda n=node: route_to(lab, n, "10.65.1.1"),
                None,
                timeout=restart_time + 5,
                interval=0.05,
                what=f"{node} drops h1's routes after its restart time",
            )
        after = time.monotonic() - killed
        print(f"h1's routes left h2 and h3 {after:.2f} s after it died (restart time {restart_time} s)")
        assert after >= restart_time - 0.5
        assert "event=bgp_stale_expired" in lab.log("rr1")


def test_drain_moves_traffic_off_before_the_host_goes() -> None:
    anycast = "10.65.9.9"
    with running_lab("quickstart") as lab:
        quickstart_ready(lab)
        for node in ("h2", "h3"):
            lab.exec(node, "ip", "netns", "add", "svc")
            lab.exec(node, "routed", "workload", "add", "svc", "--netns", "svc", "--ip", anycast)
        # the reflector prefers h2 (lower router id) and reflects that path alone
        wait_until(lambda: kernel_routes(lab, "h1").get(anycast), "10.0.0.12", timeout=10)
        out = lab.exec("h2", "routed", "drain").stdout
        assert "GRACEFUL_SHUTDOWN" in out
        wait_until(lambda: kernel_routes(lab, "h1").get(anycast), "10.0.0.13", timeout=10, what="moved to h3")
        assert status(lab, "h2")["bgp"]["draining"] is True
        # now h2 can go: a stream to the service loses nothing
        stream = PingStream(lab, "h1", "web1", anycast, 6).start()
        time.sleep(1)
        lab.exec("h2", "routed", "stop", "--withdraw")
        (sent, dropped) = lost([stream])[stream.label]
        assert dropped == 0, (sent, dropped)
        # and the drain survives the restart of h2 until undone
        lab.start("h2")
        wait_until(lambda: status(lab, "h2")["bgp"]["draining"], True, timeout=20)
        lab.exec("h2", "routed", "drain", "--undo")
        wait_until(lambda: kernel_routes(lab, "h1").get(anycast), "10.0.0.12", timeout=20, what="back to h2")


# --- interop: BIRD2 and FRR, both directions (labs/gr-interop.clab.yml) ----------------------


def interop_ready(lab: Lab) -> None:
    wait_until(lambda: kernel_routes(lab, "h1").get("10.65.9.1"), "10.0.0.31", timeout=40, what="from BIRD")
    wait_until(lambda: kernel_routes(lab, "h1").get("10.65.8.1"), "10.0.0.41", timeout=40, what="from FRR")
    wait_until(
        lambda: "10.65.1.1/32" in lab.birdc("bird1", "show", "route"), timeout=30, what="BIRD learns h1"
    )
    wait_until(lambda: "10.65.1.1" in vtysh(lab, "show ip route bgp"), timeout=30, what="FRR learns h1")
    for node, dst in (
        ("h1", "10.65.9.1"),
        ("h1", "10.65.8.1"),
        ("bird1", "10.65.1.1"),
        ("frr1", "10.65.1.1"),
    ):
        wait_until(lambda n=node, d=dst: ping(lab, n, "web", d), timeout=10, what=f"{node} -> {dst}")


def vtysh(lab: Lab, command: str) -> str:
    return lab.exec("frr1", "vtysh", "-c", command, check=False).stdout


def node_pid(lab: Lab, node: str, needle: str) -> int:
    (pid,) = pids_in(lab.netns(node), needle)
    return pid


@pytest.mark.long(75)
def test_graceful_restart_with_bird_and_frr_both_ways() -> None:
    with running_lab("gr-interop") as lab:
        interop_ready(lab)
        # routed restarts: BIRD2 and FRR keep its route, in their RIB and in the kernel
        running = [
            PingStream(lab, "bird1", "web", "10.65.1.1", 10).start(),
            PingStream(lab, "frr1", "web", "10.65.1.1", 10).start(),
        ]
        time.sleep(2)
        kill_and_wait(daemon_pid(lab, "h1"), signal.SIGKILL)
        wait_until(lambda: "(stale)" in vtysh(lab, "show bgp ipv4 unicast 10.65.1.1/32"), timeout=10)
        assert "10.65.1.1/32" in lab.birdc("bird1", "show", "route", "10.65.1.1/32")
        for node in ("bird1", "frr1"):
            assert "via 10.0.0.11" in lab.exec(node, "ip", "route", "show", "10.65.1.1").stdout
        time.sleep(2)
        lab.start("h1")
        counts = lost(running)
        assert total_lost(counts) == 0, ("routed restart", counts)
        wait_until(lambda: "(stale)" in vtysh(lab, "show bgp ipv4 unicast 10.65.1.1/32"), False, timeout=20)
        wait_until(lambda: settled(lab, ["h1"]), all_settled(["h1"]), timeout=30)

        # BIRD2's graceful restart: routed keeps its route
        running = [PingStream(lab, "h1", "web", "10.65.9.1", 10).start()]
        time.sleep(2)
        lab.birdc("bird1", "graceful", "restart")
        wait_until(lambda: peer_of(lab, "h1", "10.0.0.31")["graceful_restart"]["helper_active"], timeout=10)
        assert "[stale]" in lab.exec("h1", "routed", "routes", "--stale").stdout
        assert kernel_routes(lab, "h1")["10.65.9.1"] == "10.0.0.31"
        time.sleep(2)
        lab.exec("bird1", "bird", "-R", "-c", "/etc/bird/bird.conf", "-s", "/run/bird/bird.ctl")
        counts = lost(running)
        assert total_lost(counts) == 0, ("bird restart", counts)
        wait_until(lambda: settled(lab, ["h1"]), all_settled(["h1"]), timeout=30, what="no stale left")
        assert kernel_routes(lab, "h1")["10.65.9.1"] == "10.0.0.31"

        # FRR's bgpd crashes and is started again: routed keeps its route
        running = [PingStream(lab, "h1", "web", "10.65.8.1", 10).start()]
        time.sleep(2)
        kill_and_wait(node_pid(lab, "frr1", "/usr/lib/frr/bgpd"), signal.SIGKILL)
        wait_until(lambda: peer_of(lab, "h1", "10.0.0.41")["graceful_restart"]["helper_active"], timeout=10)
        assert kernel_routes(lab, "h1")["10.65.8.1"] == "10.0.0.41"
        time.sleep(2)
        lab.exec("frr1", "/usr/lib/frr/bgpd", "-d", "-u", "frr", "-g", "frr", "-f", "/etc/frr/frr.conf")
        counts = lost(running)
        assert total_lost(counts) == 0, ("frr restart", counts)
        wait_until(lambda: settled(lab, ["h1"]), all_settled(["h1"]), timeout=30, what="no stale left")
        assert kernel_routes(lab, "h1")["10.65.8.1"] == "10.0.0.41"


def test_announced_only_once_in_the_kernel_and_withdrawn_at_once_on_stop_withdraw() -> None:
    with running_lab("quickstart") as lab:
        quickstart_ready(lab)
        # another protocol holds 10.65.1.150 on h1 (outside its block 10.65.1.0/26: announced as a
        # /32 of its own), so routed cannot install the workload's /32
        lab.exec("h1", "ip", "route", "add", "10.65.1.150/32", "dev", "lo", "proto", "static")
        lab.exec("h1", "ip", "netns", "add", "late")
        lab.exec("h1", "routed", "workload", "add", "late", "--netns", "late", "--ip", "10.65.1.150")
        wait_until(lambda: "event=route_conflict" in lab.log("h1"), timeout=10)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # h1 cannot deliver to it, so nobody may route it to h1
            assert "10.65.1.150" not in kernel_routes(lab, "h2")
            time.sleep(0.1)
        # the conflict goes, routed installs the /32, and only then announces it
        lab.exec("h1", "ip", "route", "del", "10.65.1.150/32", "dev", "lo", "proto", "static")
        wait_until(lambda: kernel_routes(lab, "h1").get("10.65.1.150", "").startswith("rt"), timeout=10)
        wait_until(lambda: kernel_routes(lab, "h2").get("10.65.1.150"), "10.0.0.11", timeout=10)
        wait_until(lambda: ping(lab, "h2", "web1", "10.65.1.150"), timeout=10)

        # decommissioning (same lab, to save a bring-up): `routed stop --withdraw` takes h1's routes
        # off every host at once, instead of after its restart time
        out = lab.exec("h1", "routed", "stop", "--withdraw").stdout
        assert "withdrew 2 routes" in out, out  # the block and the /32 outside it
        for node in ("h2", "h3"):
            wait_until(
                lambda n=node: {route_to(lab, n, ip) for ip in ("10.65.1.1", "10.65.1.2", "10.65.1.150")},
                {None},
                timeout=5,
                what=f"{node} drops h1's routes at once",
            )
        assert peer_of(lab, "rr1", "10.0.0.11")["graceful_restart"]["stale"] == 0
        wait_until(lambda: pids_in(lab.netns("h1"), "routed run"), [], timeout=10, what="h1's daemon stops")
        # h1's own workloads keep their kernel routes: stopping never removes them
        assert kernel_routes(lab, "h1")["10.65.1.1"].startswith("rt")
