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
    """OutgoingRIB's two queues, which needs_turn reads instead of calling pending()."""

    def __init__(self) -> None:
        self._new_nlri: dict[str, object] = {}
        self._refresh_changes: list[object] = []


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
    """As if its last turn, 0.1 s ago, returned LATER (its timers due QUIET_TURN_S after)."""
    from bgp.exabgp.manypeers import QUIET_TURN_S

    peer.__dict__["_routed_turn"] = (LATER, now - 0.1 + QUIET_TURN_S, peer.fd, False)
    return peer


def test_the_outgoing_queues_read_are_what_pending_means() -> None:
    from exabgp.rib.outgoing import OutgoingRIB

    rib = OutgoingRIB(True, [])
    assert rib._new_nlri == {} and rib._refresh_changes == [] and not rib.pending()
    rib._refresh_changes.append(object())
    assert rib.pending()


def test_an_idle_established_peer_waits_for_its_timer_turn() -> None:
    from bgp.exabgp.manypeers import QUIET_TURN_S, needs_turn

    peer = quiet(FakePeer(7))
    assert not needs_turn(peer, 100.0, set(), LATER)
    assert needs_turn(
        peer, 100.0 - 0.1 + QUIET_TURN_S + 0.01, set(), LATER
    )  # no hold time known: the shortest


def backlogged() -> Any:
    from bgp.exabgp.fanout import BACKLOG

    connection = type("C", (), {})()
    connection.__dict__[BACKLOG] = b"left"
    return connection


def test_a_peer_with_work_gets_its_turn_at_once() -> None:
    from bgp.exabgp.manypeers import needs_turn

    assert needs_turn(FakePeer(7), 100.0, set(), LATER)  # never ran
    assert needs_turn(quiet(FakePeer(7)), 100.0, {7}, LATER)  # its socket woke the poll
    assert not needs_turn(quiet(FakePeer(7)), 100.0, {8}, LATER)
    peer = quiet(FakePeer(7))
    peer.__dict__["_routed_turn"] = (NOW, 100.2, 7, False)
    assert needs_turn(peer, 100.0, set(), LATER)  # asked to run again at once
    peer.__dict__["_routed_turn"] = (LATER, 100.2, 7, True)
    assert needs_turn(peer, 100.0, set(), LATER)  # left work queued after its turn
    for make_busy in (
        lambda p: p.neighbor.rib.outgoing._new_nlri.__setitem__("10.65.1.1/32", object()),
        lambda p: p.neighbor.rib.outgoing._refresh_changes.append(object()),
        lambda p: p.neighbor.eor.append("ipv4 unicast"),
        lambda p: p.neighbor.messages.append("operational"),
        lambda p: p.neighbor.refresh.append("refresh"),
        lambda p: setattr(p, "_teardown", 3),
        lambda p: setattr(p, "_neighbor", object()),
        # a direct write the kernel did not take whole (bgp.exabgp.fanout): its turn writes it
        lambda p: setattr(p, "proto", type("P", (), {"connection": backlogged()})()),
    ):
        peer = quiet(FakePeer(7))
        make_busy(peer)
        assert needs_turn(peer, 100.0, set(), LATER)
        # queues are read only after something may have filled them (queued_work)
        assert not needs_turn(peer, 100.0, set(), LATER, queues=False)


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

    def turn(hold: object) -> float:
        return quiet_turn_s(peer(hold), jitter=lambda: 0.0)

    assert turn(90) == 9.0  # keepalives every 30 s go out by 39 s at the latest
    assert turn(9) == 0.9
    assert turn(3) == QUIET_TURN_S
    assert turn(0) == 10.0  # no keepalives at all (hold time 0)
    assert turn(65535) == 10.0
    assert quiet_turn_s(type("NoProto", (), {"proto": None})()) == QUIET_TURN_S


def test_quiet_turns_are_jittered_so_that_peers_drift_apart() -> None:
    """Peers whose turns fell together do not stay together (a reactor turn running all 1,000
    clients of a reflector every interval held changes back): each turn comes up to a quarter
    of the interval early, never late."""
    from bgp.exabgp.manypeers import QUIET_JITTER, quiet_turn_s

    negotiated = type("Negotiated", (), {"holdtime": 90})()
    peer = type("Peer", (), {"proto": type("Proto", (), {"negotiated": negotiated})()})()
    assert quiet_turn_s(peer, jitter=lambda: 1.0) == 9.0 * (1 - QUIET_JITTER) == 6.75
    turns = [quiet_turn_s(peer) for _ in range(1000)]
    assert all(6.75 <= t <= 9.0 for t in turns)
    assert max(turns) - min(turns) > 2.0  # 1,000 peers due together are spread over ~2 s


def test_a_turn_runs_only_the_peers_with_something_to_do() -> None:
    from exabgp.bgp.fsm import FSM
    from exabgp.reactor.peer import ACTION

    from bgp.exabgp.manypeers import READY_FDS, quiet_peers

    class Neighbor(FakeNeighbor):
        def __init__(self, passive: bool) -> None:
            super().__init__()
            self.passive = passive

        def __getitem__(self, key: str) -> bool:
            return {"passive": self.passive}[key]

    class Peer(FakePeer):
        def __init__(self, fd: int, state: int = FSM.ESTABLISHED, passive: bool = False) -> None:
            super().__init__(fd)
            self.fsm = type("Fsm", (), {"state": state})()
            self.neighbor = Neighbor(passive)
            self.gone = False

        def run(self) -> int:
            return int(ACTION.LATER)

        def stopping(self) -> bool:
            return self.gone

    class Reactor:
        def reload(self) -> None:
            pass

        def handle_connection(self, name: str, connection: object) -> None:
            pass

    class Api:
        def process(self, reactor: Any, service: str, command: str) -> None:
            reactor._peers["settled"].neighbor.eor.append("ipv4 unicast")  # as inject_eor would

    class Callbacks:
        _async: tuple[object, ...] = ()

        def run(self) -> bool:
            return False

    quiet_peers(Reactor, Peer, Api, Callbacks)
    peers = {
        "settled": Peer(1),
        "woken": Peer(2),
        "connecting": Peer(3, FSM.CONNECT),
        "waiting": Peer(4, FSM.IDLE, passive=True),  # passive and no connection: nothing to run
        "leaving": Peer(5, FSM.IDLE, passive=True),
    }
    peers["leaving"].gone = True
    for peer in peers.values():
        peer.run()  # noted: LATER, timers due in QUIET_TURN_S, its socket
    reactor = Reactor()
    reactor._peers = peers  # type: ignore[attr-defined]
    reactor._stopping = False  # type: ignore[attr-defined]
    reactor.__dict__[READY_FDS] = {2}
    assert reactor.active_peers() == {"woken", "connecting", "leaving"}  # type: ignore[attr-defined]
    assert reactor.active_peers() == {"connecting", "leaving"}  # type: ignore[attr-defined]
    Api().process(reactor, "routed", "neighbor 10.0.0.1 announce eor ipv4 unicast")  # type: ignore[call-arg]
    assert reactor.active_peers() == {"settled", "connecting", "leaving"}  # type: ignore[attr-defined]


def test_the_peers_an_api_command_may_name_are_asked_again_only_when_they_change() -> None:
    from bgp.exabgp.manypeers import cached_peers

    class Reactor:
        def __init__(self) -> None:
            self._peers: dict[str, Any] = {"a": {"api": ["p1"]}, "b": {"api": ["p1", "p2"]}}
            self.asked = 0

        def peers(self, service: str = "") -> list[str]:
            self.asked += 1
            return [name for name, peer in self._peers.items() if not service or service in peer["api"]]

        def reload(self) -> None:
            self._peers["a"]["api"] = ["p2"]  # a reload may give a peer another API setting

    cached_peers(Reactor)
    reactor = Reactor()
    assert reactor.peers("p2") == ["b"] and reactor.peers("p2") == ["b"] and reactor.asked == 1
    reactor.peers("p2").append("mutated by a caller")
    assert reactor.peers("p2") == ["b"] and reactor.asked == 1
    assert reactor.peers("p1") == ["a", "b"] and reactor.asked == 2  # another service
    reactor._peers["c"] = {"api": ["p1"]}  # a client of a range joins
    assert reactor.peers("p1") == ["a", "b", "c"] and reactor.asked == 3
    del reactor._peers["a"]
    assert reactor.peers("p1") == ["b", "c"] and reactor.asked == 4
    reactor._peers["a"] = {"api": ["p1"]}
    reactor.reload()
    assert reactor.peers("p2") == ["b", "a"] and reactor.asked == 5


def test_a_quiet_turn_looks_only_at_the_peers_due_woken_asking_or_connecting() -> None:
    """QuietTurns (bgp/exabgp/quietturns.py): between full scans a turn finds the peers it must
    run without looking at the others; a peer not established gets every turn (what the
    fifteenth session's quiet turns lacked: a connecting peer left without turns)."""
    from bgp.exabgp.quietturns import LAST_TURN, QuietTurns

    later, now_ = 1, 100.0
    turns = QuietTurns()
    turns.clear(now_)
    peers: dict[str, Any] = {}

    def peer(key: str, due: float, fd: int, established: bool = True, action: int = later) -> None:
        peers[key] = type("Peer", (), {})()
        last = peers[key].__dict__[LAST_TURN] = (action, due, fd, False)
        turns.note(key, established, last, later)

    peer("quiet", 109.0, 1)
    peer("due", 100.5, 2)
    peer("woken", 109.0, 3)
    peer("asking", 109.0, 4, action=2)  # its last turn asked for another at once
    peer("connecting", 0.0, 5, established=False)
    peer("passive", 0.0, 6, established=False)

    def wants(p: Any) -> bool:
        return p is not peers["passive"]

    assert turns.due_now(peers, set(), now_, wants) == {"asking", "connecting"}
    assert turns.due_now(peers, {3}, now_ + 1, wants) == {"asking", "connecting", "due", "woken"}
    # "due" had its turn and noted a later time: its old heap entry is stale and skipped
    peers["due"].__dict__[LAST_TURN] = last = (later, 109.5, 2, False)
    turns.note("due", True, last, later)
    assert turns.due_now(peers, set(), now_ + 2, wants) == {"asking", "connecting"}
    # the connecting peer became established: from now on its timer decides
    last = peers["connecting"].__dict__[LAST_TURN] = (later, 105.0, 5, False)
    turns.note("connecting", True, last, later)
    assert turns.due_now(peers, set(), now_ + 3, wants) == {"asking"}
    assert turns.due_now(peers, set(), 106.0, wants) == {"asking", "connecting"}
    # a peer gone from the reactor is never named
    del peers["asking"]
    assert turns.due_now(peers, {4}, 106.0, wants) == set()
    assert not turns.rebuild_due(100.9) and turns.rebuild_due(101.0)  # a full scan at least every second
