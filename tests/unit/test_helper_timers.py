"""Graceful restart, helper side, on a fake clock: what happens to a peer's routes when its
session drops, and when each timer (restart, stalepath, long-lived) runs out."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgp.config import RestartTimers
from bgp.model import Notification
from tests.support.bgpconfig import neighbor, speaker
from tests.support.speaker import Harness

H2, RR = "10.0.0.12", "10.0.0.1"
TIMERS = RestartTimers(restart_time=120, stalepath_time=300, select_defer_time=60, long_lived_stale_time=3600)


@pytest.fixture
def mesh(tmp_path: Path) -> Harness:
    """h1 in a mesh with h2; h2 holds 10.65.2.1 and 10.65.2.2."""
    node = Harness(speaker(neighbor(H2, "mesh"), timers=TIMERS), tmp_path)
    node.feed(node.opened(H2), node.up(H2), node.routes(H2, "10.65.2.1/32", "10.65.2.2/32"), node.eor(H2))
    assert node.installed() == {"10.65.2.1/32", "10.65.2.2/32"}
    return node


def stale(node: Harness, peer: str) -> dict[str, object]:
    (status,) = [p for p in node.speaker.status()["peers"] if p["address"] == peer]
    return status["graceful_restart"]  # type: ignore[no-any-return]


def test_a_session_lost_without_notification_keeps_routes_for_the_peers_restart_time(mesh: Harness) -> None:
    mesh.feed(mesh.down(H2))
    assert mesh.installed() == {"10.65.2.1/32", "10.65.2.2/32"}
    gr = stale(mesh, H2)
    assert gr["helper_active"] and gr["stale"] == 2 and gr["timer"] == "restart time"
    assert gr["timer_left_s"] == 120
    mesh.clock.advance(119.9)
    assert mesh.installed() == {"10.65.2.1/32", "10.65.2.2/32"}
    mesh.clock.advance(0.2)  # the peer's advertised restart time is over: swept
    assert mesh.installed() == set()
    assert stale(mesh, H2)["timer"] is None


def test_a_peer_back_in_time_keeps_what_it_announces_again_and_its_end_of_rib_sweeps_the_rest(
    mesh: Harness,
) -> None:
    mesh.feed(mesh.down(H2))
    mesh.clock.advance(30)
    mesh.feed(mesh.opened(H2, restarted=True), mesh.up(H2))
    assert stale(mesh, H2)["timer"] == "stalepath time"  # its End-of-RIB is awaited now
    mesh.feed(mesh.routes(H2, "10.65.2.1/32"))
    mesh.clock.advance(200)  # within the stalepath time: nothing swept yet
    assert mesh.installed() == {"10.65.2.1/32", "10.65.2.2/32"}
    mesh.feed(mesh.eor(H2))
    assert mesh.installed() == {"10.65.2.1/32"}
    assert stale(mesh, H2)["timer"] is None  # nothing stale left: no timer either
    mesh.clock.advance(10_000)
    assert mesh.installed() == {"10.65.2.1/32"}


def test_without_its_end_of_rib_the_stalepath_time_sweeps(mesh: Harness) -> None:
    mesh.feed(mesh.down(H2))
    mesh.feed(mesh.opened(H2), mesh.up(H2), mesh.routes(H2, "10.65.2.2/32"))
    mesh.clock.advance(299)
    assert mesh.installed() == {"10.65.2.1/32", "10.65.2.2/32"}
    mesh.clock.advance(2)
    assert mesh.installed() == {"10.65.2.2/32"}


def test_a_notification_is_a_hard_reset(mesh: Harness) -> None:
    mesh.feed(Notification(mesh.speaker.cfg.neighbors[0].address, 6, 2), mesh.down(H2))
    assert mesh.installed() == set()
    assert stale(mesh, H2)["timer"] is None


def test_a_peer_back_without_forwarding_state_loses_its_stale_routes_at_once(mesh: Harness) -> None:
    mesh.feed(mesh.down(H2))
    mesh.feed(mesh.opened(H2, restart_time=None))  # no graceful restart capability any more
    assert mesh.installed() == set()


def test_graceful_restart_off_for_a_peer_withdraws_at_once(tmp_path: Path) -> None:
    node = Harness(speaker(neighbor(H2, "mesh", graceful_restart=False), timers=TIMERS), tmp_path)
    node.feed(node.opened(H2), node.up(H2), node.routes(H2, "10.65.2.1/32"))
    node.feed(node.down(H2))
    assert node.installed() == set()


def test_a_reflector_away_past_its_restart_time_stays_as_long_lived_stale(tmp_path: Path) -> None:
    node = Harness(speaker(neighbor(RR, "reflector", long_lived_stale=True), timers=TIMERS), tmp_path)
    node.feed(node.opened(RR), node.up(RR), node.routes(RR, "10.65.2.1/32", next_hop=H2), node.eor(RR))
    node.feed(node.down(RR))
    node.clock.advance(121)
    assert node.installed() == {"10.65.2.1/32"}
    assert stale(node, RR)["timer"] == "long-lived stale time"
    assert node.sink.routes[next(iter(node.sink.routes))].best.stale.name == "LONG_LIVED"
    node.clock.advance(3598)  # armed when the restart time ran out, at 120 s
    assert node.installed() == {"10.65.2.1/32"}
    node.clock.advance(1)
    assert node.installed() == set()


def test_our_exabgp_dying_keeps_every_peers_routes_for_our_restart_time(mesh: Harness) -> None:
    mesh.lose_channel()
    assert mesh.installed() == {"10.65.2.1/32", "10.65.2.2/32"}
    assert stale(mesh, H2)["timer"] == "restart time"
    mesh.clock.advance(60)
    mesh.connect()  # a new ExaBGP; h2 comes back and says all again
    mesh.feed(mesh.opened(H2), mesh.up(H2), mesh.routes(H2, "10.65.2.1/32", "10.65.2.2/32"), mesh.eor(H2))
    mesh.clock.advance(1000)
    assert mesh.installed() == {"10.65.2.1/32", "10.65.2.2/32"}
    assert stale(mesh, H2)["stale"] == 0


def test_bfd_down_withdraws_routes_kept_through_a_restart(mesh: Harness) -> None:
    mesh.feed(mesh.down(H2))
    mesh.speaker.bfd_state(H2, "up", "none")
    mesh.speaker.bfd_state(H2, "down", "control_detection_time_expired")
    assert mesh.installed() == set()
    assert stale(mesh, H2)["timer"] is None
