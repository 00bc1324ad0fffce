"""routed's BFD process between two namespaces: sessions come up (slow start, then 50 ms),
a frozen peer is declared down by detection time, and comes back up when it thaws."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bgp import procfs
from tests.integration.conftest import Namespaces, sh
from tests.lab import Lab, lab_variant, running_lab
from tests.netns import wait_until
from tests.support.fabric import daemon_pid, kernel_routes, peer_of
from tests.support.fabric import status as status_of
from tests.traffic import PingStream, kill_and_wait, lost, total_lost

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)


@contextmanager
def bfd_process(netns: str, control: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "routed.bfd.process", "--control", str(control)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not control.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the BFD process did not start"
            time.sleep(0.05)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class Control:
    """The daemon's side of the control socket, as a test sees it."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.stream = self.sock.makefile("rb")

    def configure(
        self, peer: str, local: str, interval_ms: int = 50, multiplier: int = 3, interface: str = ""
    ) -> dict[str, Any]:
        session = {
            "peer": peer,
            "local": local,
            "interval_ms": interval_ms,
            "multiplier": multiplier,
            "interface": interface,
        }
        self.sock.sendall(json.dumps({"op": "configure", "sessions": [session]}).encode() + b"\n")
        while True:
            message = json.loads(self.stream.readline())
            if "event" not in message:
                return dict(message)

    def wait_state(self, state: str, timeout: float) -> dict[str, Any]:
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.stream.readline())
            if message.get("event") == "state" and message["state"] == state:
                return dict(message)
        raise AssertionError(f"no {state} within {timeout}s")


def test_bfd_up_frozen_peer_down_and_back(namespaces: Namespaces, tmp_path: Path) -> None:
    a, b = namespaces.add(), namespaces.add()
    sh(["ip", "-n", a, "link", "add", "bfd0", "type", "veth", "peer", "name", "bfd0", "netns", b])
    for ns, address in ((a, "10.0.0.1"), (b, "10.0.0.2")):
        sh(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "bfd0"])
        sh(["ip", "-n", ns, "link", "set", "bfd0", "up"])
    with bfd_process(a, tmp_path / "a.sock"), bfd_process(b, tmp_path / "b.sock") as frozen:
        ctl_a, ctl_b = Control(tmp_path / "a.sock"), Control(tmp_path / "b.sock")
        assert ctl_a.configure("10.0.0.2", "10.0.0.1")["sessions"][0]["state"] == "down"
        ctl_b.configure("10.0.0.1", "10.0.0.2")
        ctl_a.wait_state("up", timeout=10)
        ctl_b.wait_state("up", timeout=10)
        # configuring the same again (a restarted daemon) leaves the running session alone
        assert ctl_a.configure("10.0.0.2", "10.0.0.1")["sessions"][0]["state"] == "up"
        time.sleep(1)  # past the poll sequence: both at 50 ms
        os.killpg(frozen.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            down = ctl_a.wait_state("down", timeout=5)
            print(f"detected in {(time.monotonic() - stopped) * 1000:.0f} ms")
            assert down["diag"] == "detection_time_expired", down
        finally:
            os.killpg(frozen.pid, signal.SIGCONT)
        ctl_a.wait_state("up", timeout=10)


FORGER = """
import socket, sys
from routed.bfd.packet import Packet, State
down = Packet(State.DOWN, 4242, 0, 3, 50_000, 50_000).encode()
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)  # as if one hop away
sock.bind((sys.argv[1], 49999))
for _ in range(40):
    sock.sendto(down, (sys.argv[2], 3784))
"""


def test_a_forged_bfd_down_from_a_container_leaves_the_session_up(
    namespaces: Namespaces, tmp_path: Path
) -> None:
    """Issue 25, finding 1: a container on host a, with CAP_NET_RAW or just its own address
    changed, sends State=Down as host b (source b's address, TTL 255) to a's fabric address. With
    the sockets bound to the fabric interface it never reaches a's BFD process; unbound (as
    before), it tears the session down, which this test shows first."""
    a, b, container = namespaces.add(), namespaces.add(), namespaces.add()
    sh(["ip", "-n", a, "link", "add", "bfd0", "type", "veth", "peer", "name", "bfd0", "netns", b])
    for ns, address in ((a, "10.0.0.1"), (b, "10.0.0.2")):
        sh(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "bfd0"])
        sh(["ip", "-n", ns, "link", "set", "bfd0", "up"])
    # the container: a veth to host a, the host routing its /32 to it, no other protection
    sh(["ip", "-n", a, "link", "add", "w0", "type", "veth", "peer", "name", "eth0", "netns", container])
    sh(["ip", "-n", a, "link", "set", "w0", "up"])
    sh(
        [
            "ip",
            "netns",
            "exec",
            a,
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.w0.rp_filter=0",
        ]
    )
    sh(["ip", "-n", a, "route", "add", "10.65.1.7/32", "dev", "w0"])
    sh(["ip", "-n", container, "addr", "add", "10.65.1.7/32", "dev", "eth0"])
    sh(["ip", "-n", container, "addr", "add", "10.0.0.2/32", "dev", "eth0"])  # b's address, forged
    sh(["ip", "-n", container, "link", "set", "eth0", "up"])
    sh(["ip", "-n", container, "route", "add", "10.0.0.1/32", "dev", "eth0"])
    forge = ["ip", "netns", "exec", container, sys.executable, "-c", FORGER, "10.0.0.2", "10.0.0.1"]
    with bfd_process(a, tmp_path / "a.sock"), bfd_process(b, tmp_path / "b.sock"):
        ctl_a, ctl_b = Control(tmp_path / "a.sock"), Control(tmp_path / "b.sock")
        # unbound (what routed did before): the forged Down takes the session down
        ctl_a.configure("10.0.0.2", "10.0.0.1")
        ctl_b.configure("10.0.0.1", "10.0.0.2")
        ctl_a.wait_state("up", timeout=10)
        subprocess.run(forge, check=True, timeout=30)
        ctl_a.wait_state("down", timeout=5)
        ctl_a.wait_state("up", timeout=10)
        # bound to the fabric interface, as routed configures it now: it stays up
        ctl_a.configure("10.0.0.2", "10.0.0.1", interface="bfd0")
        ctl_b.configure("10.0.0.1", "10.0.0.2", interface="bfd0")
        ctl_a.wait_state("up", timeout=10)
        subprocess.run(forge, check=True, timeout=30)
        with pytest.raises((AssertionError, TimeoutError)):
            ctl_a.wait_state("down", timeout=2)
        again = Control(tmp_path / "a.sock")  # (a read that timed out leaves a stream unusable)
        assert again.configure("10.0.0.2", "10.0.0.1", interface="bfd0")["sessions"][0]["state"] == "up"


H1_CLIENT = "  - {address: 10.0.0.11, kind: client}\n"
BFD = ", bfd: {interval_ms: 50, multiplier: 3}}"


def node_pids(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def frozen(netns: str, sig: signal.Signals) -> list[int]:
    """Signal every process of a lab node (its daemon, ExaBGP and its API process, its BFD process)."""
    pids = node_pids(netns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids


@pytest.mark.long(60)
def test_bfd_withdraws_a_frozen_or_cut_off_host_at_once_and_a_restart_is_not_a_failure() -> None:
    """dual-rr with BFD (50 ms x 3) between h1 and both reflectors; the hold time is 90 s."""
    edits = {f"dual-rr/{rr}.yaml": [(H1_CLIENT, H1_CLIENT.replace("}", BFD))] for rr in ("rr1", "rr2")} | {
        "dual-rr/h1.yaml": [
            (
                "  - {address: 10.0.0.1, kind: reflector}\n",
                "  - {address: 10.0.0.1, kind: reflector" + BFD + "\n",
            ),
            (
                "  - {address: 10.0.0.2, kind: reflector}\n",
                "  - {address: 10.0.0.2, kind: reflector" + BFD + "\n",
            ),
        ]
    }
    with lab_variant("dual-rr", {}, edits) as topology, running_lab(topology) as lab:
        wait_until(lambda: kernel_routes(lab, "h2").get("10.65.1.0/26"), "10.0.0.11", timeout=40)
        for rr in ("rr1", "rr2"):
            wait_until(
                lambda r=rr: peer_of(lab, r, "10.0.0.11")["bfd"], "up", timeout=20, what=f"{rr}'s BFD up"
            )

        # routed on h1 restarted, by SIGTERM and by SIGKILL: its BFD process keeps sending, so
        # the reflectors see no path failure, and graceful restart keeps every packet
        for sig in (signal.SIGTERM, signal.SIGKILL):
            streams = [PingStream(lab, "h2", "web", "10.65.1.1", 12).start()]
            time.sleep(2)
            kill_and_wait(daemon_pid(lab, "h1"), sig)
            lab.start("h1")
            assert total_lost(counts := lost(streams)) == 0, (sig, counts)
            for rr in ("rr1", "rr2"):
                assert "event=bfd_down" not in lab.log(rr), (sig, rr)
                assert peer_of(lab, rr, "10.0.0.11")["bfd"] == "up"
            wait_until(lambda: status_of(lab, "h1")["bgp"]["ready"], True, timeout=30, what="h1 ready again")

        # h1 frozen whole (daemon, ExaBGP, BFD): the reflectors withdraw it within a fraction of
        # a second, long before the 90 s hold time
        pids = frozen(lab.netns("h1"), signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            wait_until(
                lambda: kernel_routes(lab, "h2").get("10.65.1.0/26"), None, timeout=10, what="h1 withdrawn"
            )
            print(
                f"h1's block left h2's kernel {(time.monotonic() - stopped) * 1000:.0f} ms after the freeze"
            )
            assert "event=bfd_down" in lab.log("rr1") and "detection_time_expired" in lab.log("rr1")
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        wait_until(
            lambda: kernel_routes(lab, "h2").get("10.65.1.0/26"), "10.0.0.11", timeout=60, what="h1 back"
        )

        # h1's fabric link cut at the switch (h1 keeps its carrier: nothing tells its kernel or
        # TCP): withdrawn everywhere at BFD's pace, and h1 drops the routes it can no longer use
        wait_until(lambda: kernel_routes(lab, "h3").get("10.65.1.0/26"), "10.0.0.11", timeout=30)
        for rr in ("rr1", "rr2"):  # (BGP is back before BFD's slow-start handshake is done)
            wait_until(lambda r=rr: peer_of(lab, r, "10.0.0.11")["bfd"], "up", timeout=20, what=f"{rr}'s BFD")
        lab.exec("sw", "ip", "link", "set", "eth3", "nomaster")
        cut = time.monotonic()
        try:
            for node in ("h2", "h3"):
                wait_until(
                    lambda n=node: kernel_routes(lab, n).get("10.65.1.0/26"),
                    None,
                    timeout=10,
                    what=f"h1 withdrawn on {node}",
                )
            print(
                f"h1's link cut: its block left h2's and h3's kernels within {(time.monotonic() - cut) * 1000:.0f} ms"
            )
            wait_until(
                lambda: kernel_routes(lab, "h1").get("10.65.2.0/26"),
                None,
                timeout=10,
                what="h1 drops h2's block",
            )
            assert "up" in lab.exec("h1", "cat", "/sys/class/net/eth1/operstate").stdout
        finally:
            lab.exec("sw", "ip", "link", "set", "eth3", "master", "br0")
        for node, block in (("h2", "10.65.1.0/26"), ("h1", "10.65.2.0/26")):
            wait_until(
                lambda n=node, b=block: kernel_routes(lab, n).get(b) is not None,
                True,
                timeout=60,
                what=f"{node} again",
            )


@pytest.mark.long(40)
def test_bfd_interop_with_bird_both_ways() -> None:
    bird_peer = "  - {address: 10.0.0.31, kind: mesh, description: bird1}\n"
    edits = {
        "bird-interop/h1.yaml": [(bird_peer, bird_peer.replace("}", BFD))],
        "bird-interop/bird1.conf": [
            (
                "protocol device {}\n",
                'protocol device {}\n\nprotocol bfd {\n    interface "eth*" {\n'
                "        min rx interval 50 ms;\n        min tx interval 50 ms;\n        multiplier 3;\n    };\n}\n",
            ),
            # BIRD waits `error wait time` (60 s by default) after a session failure, and a BFD
            # down is one: in the lab it comes back at once
            (
                "    connect retry time 1;\n",
                "    connect retry time 1;\n    error wait time 1, 5;\n    direct;\n    bfd on;\n",
            ),
        ],
    }
    with lab_variant("bird-interop", {}, edits) as topology, running_lab(topology) as lab:
        wait_until(lambda: kernel_routes(lab, "h1").get("10.65.9.1"), "10.0.0.31", timeout=40)
        wait_until(lambda: peer_of(lab, "h1", "10.0.0.31")["bfd"], "up", timeout=20, what="routed's side up")
        wait_until(
            lambda: " Up " in lab.birdc("bird1", "show", "bfd", "sessions"), timeout=20, what="BIRD's side up"
        )

        # BIRD frozen: routed withdraws its route at once (BIRD's hold time is 9 s)
        frozen(lab.netns("bird1"), signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            wait_until(
                lambda: kernel_routes(lab, "h1").get("10.65.9.1"),
                None,
                timeout=5,
                what="bird1's route withdrawn",
            )
            print(
                f"bird1 frozen: its route left h1's kernel after {(time.monotonic() - stopped) * 1000:.0f} ms"
            )
        finally:
            frozen(lab.netns("bird1"), signal.SIGCONT)
        wait_until(
            lambda: kernel_routes(lab, "h1").get("10.65.9.1"), "10.0.0.31", timeout=40, what="bird1 back"
        )
        wait_until(lambda: " Up " in lab.birdc("bird1", "show", "bfd", "sessions"), timeout=20)

        # routed's BFD process frozen: BIRD declares the path down and drops h1's route
        (bfd,) = [p for p in node_pids(lab.netns("h1")) if "routed.bfd.process" in procfs.command_line(p)]
        os.kill(bfd, signal.SIGSTOP)
        try:
            wait_until(
                lambda: "10.65.1.1/32" not in lab.birdc("bird1", "show", "route", "protocol", "h1"),
                timeout=5,
                what="BIRD drops h1's route on BFD down",
            )
            assert " Up " not in lab.birdc("bird1", "show", "bfd", "sessions")
        finally:
            os.kill(bfd, signal.SIGCONT)
        wait_until(
            lambda: " Up " in lab.birdc("bird1", "show", "bfd", "sessions"), timeout=20, what="BFD back"
        )

        # authenticated on both sides (meticulous keyed SHA1, RFC 5880 §6.7.4): BIRD first, then
        # routed by reload; each refuses the other's packets meanwhile, then both are up
        bird_conf, h1_conf = (topology.parent / "bird-interop" / name for name in ("bird1.conf", "h1.yaml"))
        rewrite(bird_conf, bird_conf.read_text().replace("multiplier 3;\n", "multiplier 3;\n" + BIRD_AUTH))
        assert "Reconfigured" in lab.birdc("bird1", "configure")
        plain = h1_conf.read_text()
        rewrite(h1_conf, plain.replace(BFD, bfd_with_auth("bfd-secret")))
        assert lab.exec("h1", "routed", "reload", check=False).returncode == 0
        wait_until(lambda: bfd_up_both(lab), True, timeout=20, what="authenticated BFD up on both sides")
        wait_until(lambda: kernel_routes(lab, "h1").get("10.65.9.1"), "10.0.0.31", timeout=40)
        # stays up: had either side gone on without authentication, the other would refuse it all
        refused_before = dict(peer_of(lab, "h1", "10.0.0.31")["bfd_refused"])
        time.sleep(1)
        assert bfd_up_both(lab) and peer_of(lab, "h1", "10.0.0.31")["bfd_refused"] == refused_before

        # a wrong secret on our side: each refuses the other's digests, the path is declared
        # down, bird1's route goes, and status says why
        rewrite(h1_conf, plain.replace(BFD, bfd_with_auth("not-the-secret")))
        assert lab.exec("h1", "routed", "reload", check=False).returncode == 0
        wait_until(lambda: kernel_routes(lab, "h1").get("10.65.9.1"), None, timeout=10, what="withdrawn")
        wait_until(
            lambda: peer_of(lab, "h1", "10.0.0.31")["bfd_refused"].get("wrong digest", 0) > 0,
            timeout=10,
            what="h1 counts BIRD's packets refused for their digest",
        )
        assert " Up " not in lab.birdc("bird1", "show", "bfd", "sessions")
        shown = lab.exec("h1", "routed", "status").stdout
        assert "BFD down, refusing its packets: wrong digest" in shown, shown
        metrics = lab.exec("h1", "wget", "-q", "-O", "-", "http://127.0.0.1:9180/metrics").stdout
        assert 'routed_bfd_packets_refused_total{peer="10.0.0.31",reason="wrong digest"}' in metrics
        # the right secret again: back up
        rewrite(h1_conf, plain.replace(BFD, bfd_with_auth("bfd-secret")))
        assert lab.exec("h1", "routed", "reload", check=False).returncode == 0
        wait_until(lambda: bfd_up_both(lab), True, timeout=20, what="authenticated BFD back up")


BIRD_AUTH = '        authentication meticulous keyed sha1;\n        password "bfd-secret" { id 7; };\n'


def bfd_with_auth(secret: str) -> str:
    auth = f"auth: {{type: meticulous-keyed-sha1, key_id: 7, password: {secret}}}"
    return f", bfd: {{interval_ms: 50, multiplier: 3, {auth}}}}}"


def rewrite(path: Path, text: str) -> None:
    with open(path, "w") as handle:  # in place: the node sees it through a bind mount
        handle.write(text)


def bfd_up_both(lab: Lab) -> bool:
    ours = peer_of(lab, "h1", "10.0.0.31")["bfd"] == "up"
    return ours and " Up " in lab.birdc("bird1", "show", "bfd", "sessions")
