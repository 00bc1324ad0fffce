"""Session protection against real BGP speakers.

- max-prefix: BIRD2 sends 10,000 prefixes to a limit of 1,000, each action in turn (changed by
  reload, as an operator would);
- TCP-MD5 (RFC 2385) between routed hosts, with BIRD2 and with FRR: the same password
  establishes, a wrong or missing one never does, and status and the log say MD5 is why.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.lab import Lab, lab_variant, running_lab
from tests.netns import wait_until
from tests.support.fabric import kernel_routes, peer_of, status

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

FLOOD = 10_000
BIRD_PEER = "  - {address: 10.0.0.31, kind: mesh, description: bird1}\n"
H1_MESH = "  - {address: 10.0.0.12, kind: mesh}\n"
H2_MESH = "  - {address: 10.0.0.11, kind: mesh}\n"


def flood_routes() -> str:
    """10,000 /32s inside the pools, announced by bird1."""
    return "\n".join(f"    route 10.65.{100 + i // 256}.{i % 256}/32 via 10.0.0.31;" for i in range(FLOOD))


def from_bird(lab: Lab) -> int:
    return sum(1 for via in kernel_routes(lab, "h1").values() if via == "10.0.0.31")


def reload_with(lab: Lab, config: Any, original: str, limit: str) -> None:
    with open(config, "w") as handle:  # in place: the node sees it through a bind mount
        handle.write(original.replace(BIRD_PEER, BIRD_PEER.replace("}", f", max_prefixes: {limit}}}")))
    result = lab.exec("h1", "routed", "reload", check=False)
    assert result.returncode == 0, result


@pytest.mark.long(100)
def test_max_prefixes_against_bird_and_md5_between_routed_hosts() -> None:
    static = (
        "    route 10.65.9.1/32 via 10.0.0.31;    # legitimate: inside the pools\n"
        "    route 10.65.1.1/32 via 10.0.0.31;    # hijack: h1's own workload\n"
        "    route 10.99.0.0/24 via 10.0.0.31;    # outside the pools\n"
        "    route 0.0.0.0/0 via 10.0.0.31;       # default route\n"
    )
    edits = {
        "bird-interop/bird1.conf": [
            (static, flood_routes() + "\n"),
            ("    connect retry time 1;\n", "    connect retry time 1;\n    error wait time 1, 2;\n"),
        ],
        # h1 and h2 sign their session with TCP-MD5
        "bird-interop/h1.yaml": [(H1_MESH, H1_MESH.replace("}", ", password: h1-h2-md5}"))],
        "bird-interop/h2.yaml": [(H2_MESH, H2_MESH.replace("}", ", password: h1-h2-md5}"))],
    }
    with lab_variant("bird-interop", {}, edits) as topology, running_lab(topology) as lab:
        config = topology.parent / "bird-interop" / "h1.yaml"
        original = config.read_text()
        # the MD5-signed session between two routed hosts comes up and carries routes
        wait_until(lambda: kernel_routes(lab, "h2").get("10.65.1.1"), "10.0.0.11", timeout=30)

        # warn: everything is kept, the crossing is logged and shown
        reload_with(lab, config, original, "{limit: 1000, action: warn}")
        wait_until(lambda: from_bird(lab), FLOOD, timeout=60, what="h1 installs all 10,000 (warn)")
        peer = bird_peer(lab)
        assert (peer["received"], peer["accepted"], peer["max_prefixes"]["over"]) == (FLOOD, FLOOD, True)
        assert "over max_prefixes 1000 (warn)" in lab.exec("h1", "routed", "status").stdout
        assert "event=bgp_max_prefixes" in lab.log("h1") and "action=warn" in lab.log("h1")

        # teardown: at once on reload (it holds 10,000), Cease 6/1, its routes gone, held down,
        # back after restart_after, and torn down again as soon as it floods again
        reload_with(lab, config, original, "{limit: 1000, action: teardown, restart_after: 5}")
        wait_until(lambda: from_bird(lab), 0, timeout=20, what="bird1's routes withdrawn (teardown)")
        peer = bird_peer(lab)
        assert peer["state"] != "up" and "Cease 6/1" in peer["last_error"], peer
        assert peer["max_prefixes"]["held_down_until"] is not None
        wait_until(
            lambda: (
                "Maximum number of prefixes reached" in lab.birdc("bird1", "show", "protocols", "all", "h1")
            ),
            timeout=10,
            what="BIRD got the Cease",
        )
        wait_until(lambda: lab.log("h1").count("event=bgp_max_prefixes_released"), 1, timeout=20)
        wait_until(lambda: lab.log("h1").count("action=teardown"), 2, timeout=30, what="torn down again")
        # (what came in below the limit before the crossing goes with the teardown)
        wait_until(lambda: from_bird(lab), 0, timeout=20, what="bird1's routes withdrawn again")

        # drop: released at once, the session comes back, the first 1,000 are kept
        reload_with(lab, config, original, "{limit: 1000, action: drop}")
        wait_until(lambda: bird_peer(lab)["state"], "up", timeout=30, what="bird1 back (drop)")
        wait_until(lambda: bird_peer(lab)["rejections"].get("max prefixes"), FLOOD - 1000, timeout=60)
        peer = bird_peer(lab)
        assert (peer["received"], peer["accepted"]) == (1000, 1000), peer
        assert from_bird(lab) == 1000

        # a wrong password between routed hosts: the session never comes back, and both sides
        # say why (h2's kernel counts the segments h1 signs with the wrong key)
        with open(config, "w") as handle:
            handle.write(original.replace("password: h1-h2-md5", "password: wrong"))
        assert lab.exec("h1", "routed", "reload", check=False).returncode == 0
        wait_until(lambda: "TCPMD5Failure" in h2_peer(lab)["hint"], timeout=45, what="h2 names MD5")
        assert h2_peer(lab)["state"] != "up"  # (its routes stay, stale, for h1's restart time)
        wait_until(lambda: "TCP-MD5" in peer_of(lab, "h1", "10.0.0.12")["hint"], timeout=15, what="h1 too")
        assert "event=bgp_session_not_establishing" in lab.log("h2")
        assert "TCPMD5Failure" in lab.exec("h2", "routed", "status").stdout


def h2_peer(lab: Lab) -> dict[str, Any]:
    return peer_of(lab, "h2", "10.0.0.11")


def bird_peer(lab: Lab) -> dict[str, Any]:
    return peer_of(lab, "h1", "10.0.0.31")


BIRD_MD5 = "it's-S3\\cret"  # a quote and a backslash: ExaBGP's config could carry neither (issue 25)
BIRD_MD5_ROTATED = "rotated'S3\\cret-2"
FRR_MD5 = 'fr"r\\md5'  # a double quote and a backslash


@pytest.mark.long(90)
def test_md5_with_bird_and_frr() -> None:
    """Passwords with ', " and \\ establish with BIRD2 and FRR holding the same; a wrong or missing
    one never does; a password_file rotated in place is applied by `routed reload`."""
    bird_line = "  - {address: 10.0.0.31, kind: mesh, description: bird1}\n"
    frr_line = "  - {address: 10.0.0.41, kind: mesh, description: frr1}\n"
    edits = {
        "gr-interop.clab.yml": [
            (
                "binds: [gr-interop/h1.yaml:/etc/routed/routed.yaml:ro]",
                "binds: [gr-interop/h1.yaml:/etc/routed/routed.yaml:ro, "
                "gr-interop/bird1.password:/etc/routed/bird1.password:ro]",
            )
        ],
        "gr-interop/h1.yaml": [
            (bird_line, bird_line.replace("}", ", password_file: /etc/routed/bird1.password}")),
            (frr_line, frr_line.replace("}", f", password: '{FRR_MD5}'}}")),
        ],
        "gr-interop/bird1.conf": [
            ("    connect retry time 1;\n", f'    connect retry time 1;\n    password "{BIRD_MD5}";\n')
        ],
        "gr-interop/frr.conf": [
            (
                " neighbor 10.0.0.11 timers connect 1\n",
                f" neighbor 10.0.0.11 timers connect 1\n neighbor 10.0.0.11 password {FRR_MD5}\n",
            )
        ],
    }
    with lab_variant("gr-interop", {}, edits) as topology:
        password = topology.parent / "gr-interop" / "bird1.password"
        password.write_text(BIRD_MD5 + "\n")
        password.chmod(0o600)
        with running_lab(topology) as lab:
            config = topology.parent / "gr-interop" / "h1.yaml"
            original = config.read_text()
            # the same passwords: both sessions up, routes both ways
            wait_until(lambda: kernel_routes(lab, "h1").get("10.65.9.1"), "10.0.0.31", timeout=40)
            wait_until(lambda: kernel_routes(lab, "h1").get("10.65.8.1"), "10.0.0.41", timeout=40)
            wait_until(
                lambda: "10.65.1.1/32" in lab.birdc("bird1", "show", "route", "protocol", "h1"), timeout=20
            )
            # FRR with a wrong password, BIRD with none on our side: neither comes back, and
            # h1 says which kernel counter shows it
            with open(config, "w") as handle:
                handle.write(
                    original.replace(FRR_MD5, "not-frr").replace(
                        ", password_file: /etc/routed/bird1.password", ""
                    )
                )
            assert lab.exec("h1", "routed", "reload", check=False).returncode == 0
            wait_until(
                lambda: "TCPMD5Failure" in peer_of(lab, "h1", "10.0.0.41")["hint"],
                timeout=45,
                what="frr: MD5",
            )
            wait_until(
                lambda: "we have none" in peer_of(lab, "h1", "10.0.0.31")["hint"],
                timeout=20,
                what="bird: MD5",
            )
            # (their routes stay, stale, for their restart time: graceful restart cannot tell)
            assert all(peer_of(lab, "h1", a)["state"] != "up" for a in ("10.0.0.31", "10.0.0.41"))
            # the right ones again: both back
            with open(config, "w") as handle:
                handle.write(original)
            assert lab.exec("h1", "routed", "reload", check=False).returncode == 0
            for address in ("10.0.0.31", "10.0.0.41"):
                wait_until(
                    lambda a=address: peer_of(lab, "h1", a)["state"], "up", timeout=40, what=f"{address} up"
                )
            assert peer_of(lab, "h1", "10.0.0.41")["hint"] == ""

            # rotation: BIRD takes a new key, the session drops; the same password_file
            # rewritten in place and `routed reload` re-key h1's side, and it comes back
            bird_conf = topology.parent / "gr-interop" / "bird1.conf"
            with open(bird_conf, "r+") as handle:  # in place: bird1 sees it through a bind mount
                rotated = handle.read().replace(BIRD_MD5, BIRD_MD5_ROTATED)
                handle.seek(0)
                handle.truncate()
                handle.write(rotated)
            assert "Reconfigur" in lab.birdc("bird1", "configure")
            wait_until(
                lambda: peer_of(lab, "h1", "10.0.0.31")["state"] != "up", timeout=30, what="bird1 re-keyed"
            )
            with open(password, "w") as handle:
                handle.write(BIRD_MD5_ROTATED + "\n")
            reloaded = lab.exec("h1", "routed", "reload", check=False)
            assert reloaded.returncode == 0, reloaded
            assert "reload: changed peers[10.0.0.31].password (contents)" in reloaded.stdout, reloaded.stdout
            assert "sessions reset (their settings or TCP-MD5 key changed): 10.0.0.31" in reloaded.stdout
            assert BIRD_MD5_ROTATED not in reloaded.stdout + lab.log("h1")
            wait_until(lambda: peer_of(lab, "h1", "10.0.0.31")["state"], "up", timeout=40, what="re-keyed up")
            assert peer_of(lab, "h1", "10.0.0.41")["state"] == "up"  # the other session untouched


@pytest.mark.long(60)
def test_ttl_security_with_bird() -> None:
    """GTSM (RFC 5082) on a directly connected eBGP session: with BIRD's `ttl security on` it
    comes up; against a BIRD that sends with eBGP's usual TTL of 1, our kernel drops every
    segment (IP_MINTTL 254) and it never does."""
    tor_h1 = "    neighbor 10.1.1.1 as 64611;\n"
    h1_tor = "  - {address: 10.1.1.0, kind: ebgp, asn: 65001, description: tor1}\n"
    h2_tor = "  - {address: 10.1.2.0, kind: ebgp, asn: 65001, description: tor1}\n"
    edits = {
        "tor-ebgp/tor1.conf": [(tor_h1, tor_h1 + "    ttl security on;\n")],
        "tor-ebgp/h1.yaml": [(h1_tor, h1_tor.replace("}", ", ttl_security: true}"))],
    }
    with lab_variant("tor-ebgp", {}, edits) as topology, running_lab(topology) as lab:
        # GTSM on both ends: up, and h1 learns h2's workload through tor1
        wait_until(lambda: kernel_routes(lab, "h1").get("10.65.2.1"), "10.1.1.0", timeout=40)
        assert peer_of(lab, "h1", "10.1.1.0")["state"] == "up"
        # h2 turns GTSM on, tor1 does not: tor1's TTL-1 segments never pass h2's kernel
        config = topology.parent / "tor-ebgp" / "h2.yaml"
        gtsm = config.read_text().replace(h2_tor, h2_tor.replace("}", ", ttl_security: true}"))
        with open(config, "w") as handle:  # in place: the node sees it through a bind mount
            handle.write(gtsm)
        assert lab.exec("h2", "routed", "reload", check=False).returncode == 0
        wait_until(lambda: "GTSM" in peer_of(lab, "h2", "10.1.2.0")["hint"], timeout=45, what="h2's hint")
        assert peer_of(lab, "h2", "10.1.2.0")["state"] != "up"
        assert "Established" not in lab.birdc("tor1", "show", "protocols", "h2")
        assert "Established" in lab.birdc("tor1", "show", "protocols", "h1")


@pytest.mark.long(45)
def test_hostile_peer_input_is_refused_and_a_malformed_update_closes_only_that_session() -> None:
    """A raw BGP speaker (tests/bgp_raw_speaker.py) in bird1's place sends a flood outside the
    pools, an AS_PATH loop, a /17 inside the pools, a default route and one good route, routes
    via next hops of every refused kind, then an UPDATE whose attribute length runs past the
    message."""
    speaker = Path(__file__).resolve().parents[1] / "bgp_raw_speaker.py"
    edits = {"bird-interop.clab.yml": [("env: {NODE_DAEMON: bird}", "env: {NODE_DAEMON: none}")]}
    with lab_variant("bird-interop", {}, edits) as topology, running_lab(topology) as lab:
        outcome: list[str] = []
        argv = ["python3", str(speaker), "10.0.0.31", "10.0.0.31", "64512", "10.0.0.31", "15"]
        thread = threading.Thread(target=lambda: outcome.append(lab.exec("bird1", *argv, timeout=120).stdout))
        thread.start()
        expected = {
            "outside pools": 5000,
            "our AS in AS path": 1,
            "neither a block nor a host prefix": 1,
            "default route": 1,
            "next hop inside the pools": 1,
            "martian next hop": 3,
            "next hop off the fabric": 1,
        }
        wait_until(lambda: peer_of(lab, "h1", "10.0.0.31")["rejections"], expected, timeout=40)
        routes = kernel_routes(lab, "h1")
        assert routes.get("10.65.9.1") == "10.0.0.31", routes
        assert not [
            r
            for r in routes
            if r.startswith("10.99.")
            or r in ("default", "10.65.128.0/17", "10.65.9.2", *(f"10.65.9.{i}" for i in range(3, 8)))
        ]
        # a flood of refusals is counted, not logged line by line
        log = lab.log("h1")
        assert log.count('reason="outside pools"') <= 6 and "event=bgp_route_rejections_counted" in log
        # the mesh session with h2 is untouched by it all (once up: on a loaded machine h2 may
        # still be waiting for its fabric address when bird1's flood is over)
        wait_until(
            lambda: status(lab, "h2")["bgp"]["peers"][0]["state"], "up", timeout=30, what="h2's session"
        )
        h2 = status(lab, "h2")
        thread.join(timeout=60)
        (line,) = outcome
        assert json.loads(line)["notification"][0] == 3, line  # UPDATE Message Error, from ExaBGP
        wait_until(lambda: peer_of(lab, "h1", "10.0.0.31")["state"], "down", timeout=10)
        wait_until(
            lambda: kernel_routes(lab, "h1").get("10.65.9.1"),
            None,
            timeout=10,
            what=f"10.65.9.1 withdrawn; h1's log: {[x for x in lab.log('h1').splitlines() if 'session' in x][-4:]}",
        )
        assert status(lab, "h2")["bgp"]["peers"][0]["since"] == h2["bgp"]["peers"][0]["since"]
        assert kernel_routes(lab, "h2").get("10.65.1.1") == "10.0.0.11"
        assert status(lab, "h1")["bgp"]["exabgp"]["restarts"] == 0
