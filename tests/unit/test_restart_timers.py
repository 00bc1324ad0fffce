"""Our own restart on a fake clock: when the speaker is ready, when it is headless, and when
our End-of-RIB goes to each peer (deferral, order, the power-event rule)."""

from __future__ import annotations

import re
from pathlib import Path

from bgp.config import RestartTimers
from tests.support.bgpconfig import neighbor, speaker
from tests.support.speaker import Harness

RR1, RR2, H1, H2 = "10.0.0.1", "10.0.0.2", "10.0.0.11", "10.0.0.12"
TIMERS = RestartTimers(restart_time=120, stalepath_time=300, select_defer_time=60, long_lived_stale_time=3600)


def eors(sent: list[str]) -> list[str]:
    """The peers our End-of-RIB went to (one command names every peer it is due to at once)."""
    return [
        peer
        for line in sent
        if line.endswith(" eor ipv4 unicast")
        for peer in re.findall(r"neighbor (\S+)", line)
    ]


def node(tmp_path: Path, long_lived: bool = False) -> Harness:
    peers = (neighbor(RR1, long_lived_stale=long_lived), neighbor(RR2, long_lived_stale=long_lived))
    return Harness(speaker(*peers, timers=TIMERS), tmp_path)


def reflector(tmp_path: Path) -> Harness:
    peers = (neighbor(H1, "client"), neighbor(H2, "client"), neighbor(RR2, "nonclient"))
    return Harness(speaker(*peers, me=RR1, reflector=True, timers=TIMERS), tmp_path)


def test_ready_once_every_peer_sent_its_end_of_rib(tmp_path: Path) -> None:
    h = node(tmp_path)
    h.feed(h.up(RR1), h.eor(RR1))
    assert not h.speaker.ready.is_set()
    h.feed(h.up(RR2), h.eor(RR2))
    assert h.speaker.ready.is_set() and h.sink.ready == 1


def test_ready_after_our_restart_time_with_one_reflectors_end_of_rib(tmp_path: Path) -> None:
    h = node(tmp_path)
    h.feed(h.up(RR1), h.eor(RR1))
    h.clock.advance(119)
    assert not h.speaker.ready.is_set()
    h.clock.advance(1)
    assert h.speaker.ready.is_set()


def test_no_reflector_at_all_keeps_the_kernels_routes_a_long_lived_time_longer(tmp_path: Path) -> None:
    h = node(tmp_path, long_lived=True)
    h.clock.advance(120)
    assert not h.speaker.ready.is_set()  # the previous run's routes are all we know: kept
    h.clock.advance(3599)
    assert not h.speaker.ready.is_set()
    h.clock.advance(1)
    assert h.speaker.ready.is_set() and h.sink.ready == 1


def test_without_long_lived_stale_start_up_ends_at_the_restart_time(tmp_path: Path) -> None:
    h = node(tmp_path)
    h.clock.advance(120)
    assert h.speaker.ready.is_set()


def test_headless_when_every_reflector_is_down_and_back_when_one_returns(tmp_path: Path) -> None:
    h = node(tmp_path)
    h.feed(h.up(RR1))
    h.feed(h.down(RR1))
    assert h.speaker.status()["headless_since"] == h.clock.now  # had one, lost them all
    h.clock.advance(42)
    h.feed(h.up(RR2))
    assert h.speaker.status()["headless_since"] is None


def test_not_headless_during_start_up_until_the_restart_time(tmp_path: Path) -> None:
    h = node(tmp_path)
    h.clock.advance(119)
    assert h.speaker.status()["headless_since"] is None  # still starting: no reflector yet is normal
    h.clock.advance(1)
    assert h.speaker.status()["headless_since"] is not None


def test_our_end_of_rib_waits_until_our_table_is_whole(tmp_path: Path) -> None:
    h = node(tmp_path)
    h.feed(h.up(RR1))
    assert eors(h.sent()) == []
    h.speaker.set_local_ready()
    assert eors(h.sent()) == [RR1]
    h.feed(h.up(RR2))
    assert eors(h.sent()) == [RR2]  # each once, as its session comes up


def test_a_reflector_sends_its_end_of_rib_after_the_other_peers_or_the_deferral_time(tmp_path: Path) -> None:
    rr = reflector(tmp_path)
    rr.speaker.set_local_ready()
    rr.feed(rr.up(H1), rr.up(H2), rr.up(RR2))
    assert eors(rr.sent()) == []
    rr.feed(rr.eor(H1), rr.eor(RR2))
    assert eors(rr.sent()) == [H2]  # h2's table is whole (h1's and rr2's are in); theirs wait for h2's
    rr.clock.advance(59)
    assert eors(rr.sent()) == []
    rr.clock.advance(1)  # the selection deferral timer: a dead peer holds no one back for long
    assert sorted(eors(rr.sent())) == [H1, RR2]


def test_after_a_power_event_clients_are_waited_for_but_a_restarting_reflector_is_not(tmp_path: Path) -> None:
    rr = reflector(tmp_path)
    rr.speaker.set_local_ready()
    for peer in (H1, H2, RR2):  # everyone restarted at once: the R bit in every OPEN
        rr.feed(rr.opened(peer, restarted=True), rr.up(peer))
    rr.feed(rr.eor(H1))
    # rr2 may wait for ours before sending its own: h2's table is whole without rr2's End-of-RIB
    assert eors(rr.sent()) == [H2]
    # h2 is a client, which sends its own whatever ours: h1 and rr2 wait for it
    rr.feed(rr.eor(H2))
    assert sorted(eors(rr.sent())) == [H1, RR2]


def test_a_new_exabgp_defers_our_end_of_rib_again(tmp_path: Path) -> None:
    rr = reflector(tmp_path)
    rr.speaker.set_local_ready()
    rr.clock.advance(60)
    rr.lose_channel()
    rr.connect()
    rr.feed(rr.up(H1), rr.up(H2))
    assert eors(rr.sent()) == []  # the deferral is running again for the new ExaBGP
    rr.clock.advance(60)
    assert sorted(eors(rr.sent())) == [H1, H2]
