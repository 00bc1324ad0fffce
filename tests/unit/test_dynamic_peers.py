"""A reflector's clients from a range (bgp.dynamic) on a fake clock: a client is a neighbor from
its first event, is sent its table when its session comes up and nothing while it is away, is
forgotten once its routes' restart time is over, and a restarted reflector waits for the
clients it remembers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bgp.config import Reconfiguration
from bgp.exabgp.config import render_config
from tests.support.bgpconfig import clients, neighbor, speaker
from tests.support.speaker import Harness

RR, C1, C2, OUTSIDE = "10.0.0.1", "10.1.0.5", "10.1.0.6", "10.2.0.9"


def reflector(tmp_path: Path, *listed: str, **range_fields: object) -> Harness:
    cfg = speaker(
        *(neighbor(a, "client") for a in listed),
        me=RR,
        reflector=True,
        ranges=(clients("10.1.0.0/16", **range_fields),),
    )
    return Harness(cfg, tmp_path, clients_file=tmp_path / "clients.json")


def join(rr: Harness, client: str, *prefixes: str, restart_time: int | None = 120) -> None:
    rr.feed(rr.opened(client, restart_time), rr.up(client), rr.routes(client, *prefixes), rr.eor(client))


def to(peer: str, command: str) -> bool:
    """Whether an ExaBGP command names `peer` (commands name every peer they go to)."""
    selectors = command.split(" announce ")[0].split(" withdraw ")[0]
    return f"neighbor {peer}" in [s.strip() for s in selectors.split(",")]


def peers(rr: Harness) -> dict[str, dict[str, object]]:
    return {p["address"]: dict(p) for p in rr.speaker.status()["peers"]}


def test_a_client_from_the_range_joins_and_routes_are_reflected_both_ways(tmp_path: Path) -> None:
    rr = reflector(tmp_path)
    join(rr, C1, "10.65.1.0/26")
    rr.sent()
    join(rr, C2, "10.65.2.0/26")
    sent = rr.sent()
    # the newcomer gets the table as it is; the one there before gets the newcomer's route
    assert any(to(C2, c) and "announce" in c and "10.65.1.0/26" in c for c in sent), sent
    assert any(to(C1, c) and "announce" in c and "10.65.2.0/26" in c for c in sent), sent
    status = peers(rr)
    assert status[C1]["range"] == "10.1.0.0/16" and status[C1]["kind"] == "client"
    assert status[C2]["state"] == "up"
    assert rr.clients[-1] == [C1, C2]


def test_an_address_outside_every_range_is_not_a_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rr = reflector(tmp_path)
    join(rr, OUTSIDE, "10.65.9.0/26")
    assert OUTSIDE not in peers(rr)
    assert "bgp_unknown_peer" in caplog.text
    assert rr.sent() == []


def test_a_client_away_is_sent_nothing_and_forgotten_after_its_restart_time(tmp_path: Path) -> None:
    rr = reflector(tmp_path)
    join(rr, C1, "10.65.1.0/26")
    join(rr, C2, "10.65.2.0/26", restart_time=90)
    rr.sent()
    rr.feed(rr.down(C2))  # no NOTIFICATION: its routes are kept as stale
    assert peers(rr)[C2]["forget_in_s"] == 90
    join(rr, "10.1.0.7", "10.65.3.0/26")
    sent = rr.sent()
    assert not [c for c in sent if to(C2, c)], "nothing goes to a client away"
    assert any("10.65.2.0/26" in c for c in sent if to("10.1.0.7", c)), "stale still reflected"
    rr.clock.advance(89)
    assert C2 in peers(rr)
    rr.clock.advance(2)
    assert C2 not in peers(rr)
    sent = rr.sent()
    assert any(to(C1, c) and "withdraw" in c and "10.65.2.0/26" in c for c in sent), sent
    assert rr.clients[-1] == [C1, "10.1.0.7"]


def test_a_client_back_within_its_restart_time_is_the_same_neighbor_and_gets_its_table_again(
    tmp_path: Path,
) -> None:
    rr = reflector(tmp_path)
    join(rr, C1, "10.65.1.0/26")
    join(rr, C2, "10.65.2.0/26")
    rr.feed(rr.down(C2))
    rr.clock.advance(30)
    rr.sent()
    join(rr, C2, "10.65.2.0/26")
    sent = rr.sent()
    assert any(to(C2, c) and "announce" in c and "10.65.1.0/26" in c for c in sent), sent
    status = peers(rr)[C2]
    assert status["flaps"] == 1 and status["forget_in_s"] is None
    rr.clock.advance(1000)
    assert C2 in peers(rr)


def test_a_client_that_leaves_with_a_notification_is_forgotten_at_once(tmp_path: Path) -> None:
    rr = reflector(tmp_path)
    join(rr, C1, "10.65.1.0/26")
    join(rr, C2, "10.65.2.0/26", restart_time=None)  # no graceful restart
    rr.feed(rr.down(C2))
    assert C2 not in peers(rr)
    assert "10.65.2.0/26" not in {str(p) for p in rr.speaker.rib.loc_rib()}


def test_a_listed_peer_inside_the_range_keeps_its_own_settings(tmp_path: Path) -> None:
    rr = reflector(tmp_path, C1)
    join(rr, C1, "10.65.1.0/26")
    assert peers(rr)[C1]["range"] is None


def test_exabgp_accepts_the_range_passively_with_its_md5_key(tmp_path: Path) -> None:
    rr = reflector(tmp_path, md5_password="s3cret")
    config = render_config(rr.speaker.cfg, "true")
    block = config[config.index("neighbor 10.1.0.0/16 {") :]
    assert "passive true;" in block and "md5-password czNjcmV0;" in block and "md5-base64 true;" in block


def test_a_restarted_reflector_waits_for_the_clients_it_remembers(tmp_path: Path) -> None:
    rr = reflector(tmp_path)
    join(rr, C1, "10.65.1.0/26")
    join(rr, C2, "10.65.2.0/26")
    rr.clock.advance(2)  # the file is written once a burst of joins is over
    assert json.loads((tmp_path / "clients.json").read_text()) == {"clients": [C1, C2]}

    again = reflector(tmp_path)
    assert set(peers(again)) == {C1, C2}  # known before either has connected
    again.speaker.set_local_ready()
    again.sent()
    join(again, C1, "10.65.1.0/26")
    assert not [c for c in again.sent() if "eor" in c], "C2 has not sent its End-of-RIB yet"
    join(again, C2, "10.65.2.0/26")
    eors = [c for c in again.sent() if "eor" in c]
    assert any(C1 in c for c in eors) and any(C2 in c for c in eors), eors


def test_a_remembered_client_that_never_comes_back_is_forgotten_after_the_restart_time(
    tmp_path: Path,
) -> None:
    (tmp_path / "clients.json").write_text(json.dumps({"clients": [C1, OUTSIDE]}))
    rr = reflector(tmp_path)
    assert set(peers(rr)) == {C1}  # no longer in a range: not remembered
    rr.clock.advance(121)
    assert peers(rr) == {}


def test_a_garbled_clients_file_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "clients.json").write_text('{"clients": ["not an address"')
    rr = reflector(tmp_path)
    assert peers(rr) == {} and "bgp_clients_file_unreadable" in caplog.text


def test_our_exabgp_restarting_sends_each_client_its_table_when_it_is_back(tmp_path: Path) -> None:
    rr = reflector(tmp_path)
    join(rr, C1, "10.65.1.0/26")
    join(rr, C2, "10.65.2.0/26")
    rr.sent()
    rr.lose_channel()
    rr.connect()
    assert not [c for c in rr.sent() if to(C1, c)], "not before its session is up"
    join(rr, C1, "10.65.1.0/26")
    assert any(to(C1, c) and "10.65.2.0/26" in c for c in rr.sent())


def test_a_reload_forgets_the_clients_of_a_range_removed_and_keeps_those_of_one_relabelled(
    tmp_path: Path,
) -> None:
    rr = reflector(tmp_path)
    join(rr, C1, "10.65.1.0/26")
    relabelled = speaker(me=RR, reflector=True, ranges=(clients("10.1.0.0/16", description="rack clients"),))
    kept = rr.speaker.dynamic.reconfigure(relabelled, lambda old, new: old.hold_time == new.hold_time)
    assert kept == [] and peers(rr)[C1]["description"] == "rack clients"
    removed = speaker(me=RR, reflector=True)
    gone = rr.speaker.dynamic.reconfigure(removed, lambda old, new: True)
    assert [n.address for n in gone] == [rr.speaker.neighbors[n.address].address for n in gone]
    assert [str(n.address) for n in gone] == [C1]
    assert Reconfiguration(ranges_changed=True).sessions_changed
