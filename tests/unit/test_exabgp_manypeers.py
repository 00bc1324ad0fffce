"""bgp.exabgp.manypeers: the indexed neighbour matcher answers as ExaBGP's own, one regular
expression per selector per neighbour, did (docs/upstream/exabgp/0006)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from exabgp.reactor.api.command import limit  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from bgp.exabgp.manypeers import indexed_matcher, pair_index


def name(address: str, peer_as: int = 64512) -> str:
    return (
        f"neighbor {address} local-ip 10.0.0.1 local-as 64512 peer-as {peer_as} "
        "router-id 10.0.0.1 family-allowed in-open"
    )


def reference(peers: list[str], descriptions: list[list[str]]) -> list[str]:
    """ExaBGP 5.0's match_neighbors, as released."""
    if not descriptions:
        return peers
    returned: list[str] = []
    for peer in peers:
        for description in descriptions:
            if limit.match_neighbor(description, peer) and peer not in returned:
                returned.append(peer)
    return returned


PEERS = [name(f"10.1.0.{i}", 64512 + i % 3) for i in range(1, 60)]
SELECTORS = st.sampled_from(
    [f"neighbor 10.1.0.{i}" for i in range(0, 70)]
    + [
        "neighbor *",
        "peer-as 64513",
        "peer-as 1",
        "local-as 64512",
        "10.1.0.1 local-ip",
        "neighbor  10.1.0.1",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(SELECTORS, min_size=1, max_size=3), max_size=8))
def test_answers_as_exabgp_did(descriptions: list[list[str]]) -> None:
    match = indexed_matcher(limit.match_neighbor)
    assert list(match(PEERS, descriptions)) == reference(PEERS, descriptions)


def test_no_descriptions_is_every_peer() -> None:
    assert indexed_matcher(limit.match_neighbor)(PEERS, []) == PEERS


def test_one_change_to_all_clients_but_one_runs_no_regex(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    peers = [name(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(1000)]
    descriptions = [[f"neighbor {p.split()[1]}"] for p in peers[1:]]
    match = indexed_matcher(limit.match_neighbor)
    searches: list[object] = []
    monkeypatch.setattr(re, "search", lambda *a: searches.append(a))
    assert list(match(peers, descriptions)) == peers[1:]
    assert searches == []


def test_index_is_every_adjacent_pair() -> None:
    index = pair_index(["neighbor 10.0.0.1 peer-as 1"])
    assert set(index) == {"neighbor 10.0.0.1", "10.0.0.1 peer-as", "peer-as 1"}


class Queue(list):  # type: ignore[type-arg]
    pass


class FakeRib:
    def __init__(self) -> None:
        self.queued = False

    def pending(self) -> bool:
        return self.queued


class FakeNeighbor:
    def __init__(self) -> None:
        self.eor: Queue = Queue()
        self.messages: Queue = Queue()
        self.refresh: Queue = Queue()
        self.rib = type("Rib", (), {"outgoing": FakeRib()})()


class FakePeer:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._teardown = None
        self._neighbor = None
        self.neighbor = FakeNeighbor()
        self.proto: Any = None

    def socket(self) -> int:
        return self.fd


LATER, NOW = 2, 3


def quiet(peer: FakePeer, now: float = 100.0) -> FakePeer:
    peer.__dict__["_routed_turn"] = (LATER, now - 0.1)
    return peer


def test_an_idle_established_peer_waits_for_its_timer_turn() -> None:
    from bgp.exabgp.manypeers import QUIET_TURN_S, needs_turn

    peer = quiet(FakePeer(7))
    assert not needs_turn(peer, 100.0, set(), LATER)
    assert needs_turn(
        peer, 100.0 - 0.1 + QUIET_TURN_S + 0.01, set(), LATER
    )  # no hold time known: the shortest


def test_a_peer_with_work_gets_its_turn_at_once() -> None:
    from bgp.exabgp.manypeers import needs_turn

    assert needs_turn(FakePeer(7), 100.0, set(), LATER)  # never ran
    assert needs_turn(quiet(FakePeer(7)), 100.0, {7}, LATER)  # its socket woke the poll
    assert not needs_turn(quiet(FakePeer(7)), 100.0, {8}, LATER)
    peer = quiet(FakePeer(7))
    peer.__dict__["_routed_turn"] = (NOW, 99.9)
    assert needs_turn(peer, 100.0, set(), LATER)  # asked to run again at once
    for make_busy in (
        lambda p: p.neighbor.rib.outgoing.__setattr__("queued", True),
        lambda p: p.neighbor.eor.append("ipv4 unicast"),
        lambda p: p.neighbor.messages.append("operational"),
        lambda p: p.neighbor.refresh.append("refresh"),
        lambda p: setattr(p, "_teardown", 3),
        lambda p: setattr(p, "_neighbor", object()),
    ):
        peer = quiet(FakePeer(7))
        make_busy(peer)
        assert needs_turn(peer, 100.0, set(), LATER)


def test_injections_take_the_matched_peers_as_a_set() -> None:
    from bgp.exabgp.manypeers import peer_sets

    seen: list[object] = []

    class Configuration:
        def inject_change(self, peers: object, change: object) -> bool:
            seen.append(peers)
            return True

        inject_eor = inject_operational = inject_refresh = inject_change

    peer_sets(Configuration)
    names = [f"neighbor 10.1.0.{i}" for i in range(5)]
    for method in ("inject_change", "inject_eor", "inject_operational", "inject_refresh"):
        assert getattr(Configuration(), method)(names, "what") is True
    assert seen == [set(names)] * 4


class FakeUpdate:
    def __init__(self, *messages: bytes) -> None:
        self._messages = messages

    def messages(self, negotiated: object, include_withdraw: bool) -> Iterator[bytes]:
        yield from self._messages


class FakeConnection:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writer(self, data: bytes) -> Iterator[bool]:
        self.writes.append(data)
        yield True


def fake_protocol(updates: list[FakeUpdate], api: dict[str, bool]) -> Any:
    from collections import Counter

    outgoing = type("Outgoing", (), {"updates": lambda self, grouped: iter(updates)})()
    neighbor = type("N", (), {"api": api, "rib": type("R", (), {"outgoing": outgoing})()})()
    neighbor.__class__.__getitem__ = lambda self, key: True  # neighbor['group-updates']
    proto = type("P", (), {})()
    proto.neighbor, proto.negotiated, proto.connection = neighbor, None, FakeConnection()
    proto.peer = type("Peer", (), {"stats": Counter()})()
    return proto


def test_a_peers_updates_go_out_in_few_writes() -> None:
    from bgp.exabgp.manypeers import BATCH_BYTES, batched_updates

    sent: list[str] = []

    class Protocol:
        def new_update(self, include_withdraw: bool) -> Iterator[object]:
            sent.append("original")
            yield "done"

    batched_updates(Protocol)
    message = b"\xff" * 16 + b"\x00\x30\x02" + b"u" * 29  # 48 bytes
    count = 3 * BATCH_BYTES // len(message) + 5
    proto = fake_protocol([FakeUpdate(message, message) for _ in range(count // 2)], {})
    list(Protocol.new_update(proto, True))
    writes = proto.connection.writes
    assert b"".join(writes) == message * (count // 2 * 2)  # every byte, in order
    assert len(writes) == 4 and proto.peer.stats["send-update"] == count // 2 * 2
    # an API that wants each UPDATE sent gets ExaBGP's own path
    api_proto = fake_protocol([FakeUpdate(message)], {"send-update": True})
    list(Protocol.new_update(api_proto, True))
    assert sent == ["original"] and api_proto.connection.writes == []


def test_a_quiet_turn_is_a_tenth_of_the_negotiated_hold_time() -> None:
    from bgp.exabgp.manypeers import QUIET_TURN_S, quiet_turn_s

    def peer(hold: object) -> Any:
        negotiated = type("Negotiated", (), {"holdtime": hold})()
        return type("Peer", (), {"proto": type("Proto", (), {"negotiated": negotiated})()})()

    assert quiet_turn_s(peer(90)) == 9.0  # keepalives every 30 s go out by 39 s at the latest
    assert quiet_turn_s(peer(9)) == 0.9
    assert quiet_turn_s(peer(3)) == QUIET_TURN_S
    assert quiet_turn_s(peer(0)) == 10.0  # no keepalives at all (hold time 0)
    assert quiet_turn_s(peer(65535)) == 10.0
    assert quiet_turn_s(type("NoProto", (), {"proto": None})()) == QUIET_TURN_S


ESTABLISHED, CONNECT = "established", "connect"


class ReactorPeer(FakePeer):
    """A peer as QuietTurns sees it in the reactor's table."""

    def __init__(self, fd: int, fsm: str = ESTABLISHED, passive: bool = False) -> None:
        super().__init__(fd)
        self.fsm = fsm
        self.proto = None
        self.leaving = False
        self.neighbor.__class__ = type("N", (FakeNeighbor,), {"__getitem__": lambda s, k: passive})

    def stopping(self) -> bool:
        return self.leaving


def settled_turns(peers: dict[str, ReactorPeer], now: float = 100.0) -> Any:
    from bgp.exabgp.manypeers import QuietTurns

    turns = QuietTurns(ESTABLISHED, LATER)
    for _ in range(2):  # the first turns are full scans
        turns.choose(peers, set(), now)
    for peer in peers.values():
        quiet(peer, now)
    return turns


def table(n: int) -> dict[str, ReactorPeer]:
    return {f"p{i}": ReactorPeer(100 + i) for i in range(n)}


def test_a_settled_reactor_looks_only_at_the_peers_whose_socket_woke_it() -> None:
    peers = table(5)
    turns = settled_turns(peers)
    for peer in peers.values():  # a scan would now choose every peer: none may be looked at
        peer.neighbor.rib.outgoing.queued = True
    assert turns.choose(peers, {102}, 100.05) == {"p2"}
    assert turns.choose(peers, set(), 100.06) == set()
    del peers["p3"]
    assert turns.choose(peers, {103}, 100.07) == set()  # gone meanwhile: not run


def test_a_full_scan_comes_at_least_once_a_second() -> None:
    peers = table(3)
    for peer in peers.values():  # hold time 90 s: a quiet turn every 9 s
        peer.proto = type(
            "Proto", (), {"connection": None, "negotiated": type("Negotiated", (), {"holdtime": 90})()}
        )()
    turns = settled_turns(peers)
    peers["p1"].neighbor.rib.outgoing.queued = True  # not by a command: only a scan sees it
    assert turns.choose(peers, set(), 100.5) == set()
    assert turns.choose(peers, set(), 101.01) == {"p1"}


def test_anything_but_a_settled_peers_socket_makes_two_full_turns() -> None:
    for disturbance in ("api", "callbacks", "reload", "asked_again"):
        peers = table(3)
        turns = settled_turns(peers)
        peers["p1"].neighbor.rib.outgoing.queued = True  # what the command queued, say
        if disturbance == "api":
            first = turns.choose(peers, {7}, 100.01, api_fds={9})  # a descriptor no settled peer owns
        elif disturbance == "callbacks":
            first = turns.choose(peers, set(), 100.01, busy=True)
        elif disturbance == "reload":
            turns.disturb()
            first = turns.choose(peers, set(), 100.01)
        else:
            turns.ran(peers["p0"], NOW)
            first = turns.choose(peers, set(), 100.01)
        assert "p1" in first, disturbance
        if disturbance == "asked_again":
            continue  # one full turn: the peer's own
        peers["p1"].neighbor.rib.outgoing.queued = False
        peers["p2"].neighbor.rib.outgoing.queued = True  # queued by the command, read after the peers
        assert "p2" in turns.choose(peers, set(), 100.02), disturbance
        peers["p2"].neighbor.rib.outgoing.queued = False


def test_peers_not_established_or_leaving_run_every_turn_and_keep_scans_full() -> None:
    peers = table(3)
    peers["new"] = ReactorPeer(200, fsm=CONNECT)
    peers["waiting"] = ReactorPeer(201, fsm=CONNECT, passive=True)  # passive, not connected
    turns = settled_turns(peers)
    for turn in range(5):
        assert turns.choose(peers, set(), 100.01 + turn / 100) == {"new"}
    peers["new"].fsm = ESTABLISHED
    quiet(peers["new"])
    peers["p0"].leaving = True
    assert turns.choose(peers, set(), 100.1) == {"p0"}
    assert turns.choose(peers, set(), 100.11) == {"p0"}
    peers["p0"].leaving = False
    turns.choose(peers, set(), 100.12)
    turns.choose(peers, set(), 100.13)
    peers["p1"].neighbor.rib.outgoing.queued = True
    assert turns.choose(peers, set(), 100.14) == set()  # settled again: incremental


def test_a_peer_that_ran_with_work_left_or_a_new_state_makes_the_next_turn_full() -> None:
    peers = table(2)
    turns = settled_turns(peers)
    peers["p1"].neighbor.rib.outgoing.queued = True
    turns.ran(peers["p1"], LATER)  # ran, but something is still queued
    assert "p1" in turns.choose(peers, set(), 100.01)


def test_a_route_command_turns_only_the_peers_it_queued_work_for() -> None:
    peers = table(4)
    turns = settled_turns(peers)
    for peer in peers.values():  # a scan would choose every peer: none may be looked at
        peer.neighbor.rib.outgoing.queued = True
    assert turns.choose(peers, {9}, 100.01, api_fds={9}) == set()  # the command is read after
    turns.touch({"p1", "p3", "gone"})  # what inject_* queued work for
    assert turns.choose(peers, set(), 100.02, api_fds={9}) == {"p1", "p3"}
    assert turns.choose(peers, set(), 100.03, api_fds={9}) == set()  # once


def test_commands_that_are_not_a_routes_are_told_apart() -> None:
    from bgp.exabgp.manypeers import is_route_command

    for command in (
        "neighbor 10.0.0.2 , neighbor 10.0.0.3 announce attributes next-hop 10.0.0.9 nlri 10.65.1.0/26",
        "neighbor 10.0.0.2 withdraw attributes nlri 10.65.1.0/26",
        "neighbor 10.0.0.2 announce eor ipv4 unicast",
        "announce route 10.65.1.0/26 next-hop 10.0.0.9",
        "neighbor 10.0.0.2 announce route-refresh ipv4 unicast",
    ):
        assert is_route_command(command), command
    for command in (
        "neighbor 10.0.0.2 teardown 2",
        "announce watchdog dns",
        "withdraw watchdog dns",
        "show neighbor summary",
        "shutdown",
        "checking for new connection(s)",
    ):
        assert not is_route_command(command), command


def test_new_connections_are_taken_before_the_route_commands_queued(monkeypatch: Any) -> None:
    from exabgp.reactor.api import API
    from exabgp.reactor.asynchronous import ASYNC
    from exabgp.reactor.loop import Reactor
    from exabgp.reactor.peer import Peer

    from bgp.exabgp.manypeers import NEW_CONNECTIONS, quiet_peers

    for cls, name in ((Reactor, "active_peers"), (Reactor, "reload"), (Peer, "run"), (API, "process")):
        monkeypatch.setattr(cls, name, getattr(cls, name))  # restored after the test
    monkeypatch.setattr(ASYNC, "schedule", ASYNC.schedule)
    quiet_peers(Reactor, Peer, API, ASYNC)
    queue = ASYNC()
    routes = [("api", iter(())) for _ in range(3)]  # a reflector's table being distributed
    queue._async.extend(routes)
    accept = iter(())
    queue.schedule("listener", NEW_CONNECTIONS, accept)
    assert queue._async[0] == ("listener", accept)
    assert list(queue._async)[1:] == routes
