"""ExaBGP changes for a speaker with many neighbours (a route reflector of hundreds of hosts),
applied by bgp.exabgp.launch. Each is meant for upstream (docs/upstream/exabgp/).

`indexed_neighbor_match` (0006): an API command naming its neighbours ("neighbor A , neighbor
B announce ...", how routed sends one change to every client but its origin) was matched by
trying every selector against every configured neighbour with a fresh regular expression:
O(selectors x neighbours) regex searches, a quarter of a million for one change on a
reflector of 500 clients. A profile of a 200-client reflector (py-spy) had 94 % of ExaBGP's
samples there, and its sessions took 109 s to come up. The neighbours' names are now indexed
by their "key value" pairs once (until the set of neighbours changes) and each selector is
a set lookup; what matches is unchanged.

`peer_sets` (0007): _Configuration.inject_change, inject_eor, inject_operational and
inject_refresh walk every configured neighbour and test `name in peers`, where peers is the
list a command matched: O(neighbours x matched) string comparisons per command, a million for
one change on a 1,000-client reflector (94 % of its ExaBGP for minutes). They now get a set.

`batched_updates` (0008): Protocol.new_update wrote every UPDATE with its own send(), and a
reflector's UPDATEs are one route each (every client's route has its own next hop and
originator): a 1,000-client reflector's table is a million sends, and a profile had 30 % of
its ExaBGP in them. The UPDATEs of one batch for a peer now go in writes of up to 64 KB.

`quiet_peers`: the reactor ran every connected peer on every turn of its loop, whether it had
anything to do or not, and a reflector's loop turns for every API command, every connection
and every message: O(turns x peers), which made 500 sessions take 54 s to come up and an idle
500-client reflector burn 15 % of a core. An established peer now gets a turn when its socket
woke the poll, when it has routes, End-of-RIBs, messages or a refresh queued, when a teardown
or reload waits for it, when its last turn asked for another at once, and otherwise every
tenth of its hold time (its keepalive and hold timers count in seconds). Peers not established
yet (connecting, exchanging OPENs) and peers on their way out run on every turn, as before.
Deciding that still looked at every peer on every turn: an idle 1,000-client reflector's
keepalives alone woke it ~40 times a second, and each wake scanned 1,000 peers (8.6 % of a
core). While every peer is settled, a turn now looks only at the peers whose socket woke it,
with a full scan at least once a second (QuietTurns).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bgp.exabgp.fanout import has_backlog

READY_FDS = "_routed_ready"  # the descriptors the reactor's last poll reported (launch.wait_for_io)
LAST_TURN = "_routed_turn"  # a peer's last turn: (its ACTION, when)
QUIET_TURN_S = 0.3
FULL_SCAN_S = 1.0  # the longest a settled reactor goes without looking at every peer

Matcher = Callable[[Sequence[str], Sequence[Sequence[str]]], Sequence[str]]


def pair_index(names: Sequence[str]) -> dict[str, set[str]]:
    """{"neighbor 10.0.0.1": {names}, "local-as 64512": {...}, ...}: every two adjacent words of
    every name, which is what `(^|\\s)<key value>($|\\s|,)` can match in it."""
    index: dict[str, set[str]] = {}
    for name in names:
        words = name.split(" ")
        for pair in {f"{a} {b}" for a, b in itertools.pairwise(words)}:
            index.setdefault(pair, set()).add(name)
    return index


def indexed_matcher(original_match: Callable[[Sequence[str], str], bool]) -> Matcher:
    """match_neighbors(peers, descriptions) with ExaBGP's semantics (limit.match_neighbor: the
    strings of a description must all match, up to a `neighbor *`, which matches any), through
    a pair index. A string that is not one `key value` pair takes the original matcher."""
    cached: list[Any] = [None, None]

    def match_neighbors(peers: Sequence[str], descriptions: Sequence[Sequence[str]]) -> Sequence[str]:
        if not descriptions:
            return peers
        key = tuple(peers)
        if cached[0] != key:
            cached[0], cached[1] = key, pair_index(key)
        index: dict[str, set[str]] = cached[1]
        matched: set[str] = set()
        for description in descriptions:
            candidates: set[str] | None = None
            for string in description:
                if string.strip() == "neighbor *":
                    break
                if string.count(" ") != 1 or any(c.isspace() and c != " " for c in string):
                    hits = {
                        p
                        for p in (candidates if candidates is not None else key)
                        if original_match([string], p)
                    }
                else:
                    hits = index.get(string, set())
                candidates = hits if candidates is None else candidates & hits
                if not candidates:
                    break
            matched |= set(key) if candidates is None else candidates
        return [peer for peer in dict.fromkeys(peers) if peer in matched]

    return match_neighbors


def indexed_neighbor_match() -> None:
    from exabgp.reactor.api.command import announce, limit, rib  # type: ignore[import-untyped]

    matcher = indexed_matcher(limit.match_neighbor)
    for module in (limit, announce, rib):
        module.match_neighbors = matcher


def peer_sets(configuration_class: Any) -> None:
    for method in ("inject_change", "inject_eor", "inject_operational", "inject_refresh"):
        original = getattr(configuration_class, method)

        def with_a_set(self: Any, peers: Any, what: Any, _original: Any = original) -> Any:
            matched = peers if isinstance(peers, set | frozenset | dict) else set(peers)
            touch(matched)  # whatever this queues for them goes out on their next turn
            return _original(self, matched, what)

        setattr(configuration_class, method, with_a_set)


BATCH_BYTES = 65536


def batched_updates(protocol_class: Any) -> None:
    from exabgp.bgp.message import _NOP, Message  # type: ignore[import-untyped]
    from exabgp.reactor import protocol  # type: ignore[import-untyped]

    new_update = protocol_class.new_update
    sent_code = "send-" + Message.CODE.short(Message.CODE.UPDATE)

    def new_update_batched(self: Any, include_withdraw: bool) -> Any:
        if self.neighbor.api.get(sent_code, False):
            yield from new_update(self, include_withdraw)  # the API wants each one: as before
            return
        updates = self.neighbor.rib.outgoing.updates(self.neighbor["group-updates"])
        batch: list[bytes] = []
        size = 0
        for update in updates:
            for message in update.messages(self.negotiated, include_withdraw):
                self.peer.stats[sent_code] += 1
                batch.append(message)
                size += len(message)
                if size >= BATCH_BYTES:
                    for _ in self.connection.writer(b"".join(batch)):
                        yield _NOP
                    batch, size = [], 0
        if batch:
            for _ in self.connection.writer(b"".join(batch)):
                yield _NOP
        yield protocol._UPDATE

    protocol_class.new_update = new_update_batched


def quiet_turn_s(peer: Any) -> float:
    """How long an idle established peer may go without a turn: a tenth of its negotiated hold
    time (its keepalives, due every third, go out at most that late; a silent peer is noticed
    at most that late), between QUIET_TURN_S and 10 s."""
    try:
        hold = int(peer.proto.negotiated.holdtime)
    except (AttributeError, TypeError, ValueError):
        return QUIET_TURN_S
    return min(10.0, max(QUIET_TURN_S, hold / 10)) if hold else 10.0


def needs_turn(peer: Any, now: float, ready: set[int], later: object) -> bool:
    """Whether an established peer has anything to do this turn (see quiet_peers)."""
    last = peer.__dict__.get(LAST_TURN)
    if last is None or last[0] != later or now - last[1] >= quiet_turn_s(peer):
        return True
    if has_work(peer):
        return True
    return bool(ready) and peer.socket() in ready


class QuietTurns:
    """Which peers get this turn of the reactor (see quiet_peers), kept on the reactor.

    A full scan looks at every peer; while every peer is settled (established, its last turn
    asked for nothing more, nothing queued), a turn looks only at the peers whose socket woke
    the poll and the peers a route command queued work for (`touch`), and a full scan comes
    at the latest after `full_scan_s` (at most a second, at least as often as the shortest
    quiet turn). Anything else (a descriptor no settled peer or API process owns; a command
    or callback that is not a route's, such as a teardown or a new connection; a reload; a
    peer asking for more) makes this turn and the next full scans."""

    def __init__(self, established: object, later: object) -> None:
        self.established = established
        self.later = later
        self.settled_fds: dict[int, str] = {}
        self.touched: set[str] = set()
        self.next_full = 0.0
        self.full_turns = 2

    def disturb(self) -> None:
        self.full_turns = 2

    def touch(self, names: Iterable[str]) -> None:
        self.touched.update(names)

    def ran(self, peer: Any, action: object) -> None:
        if action != self.later or peer.fsm != self.established or has_work(peer):
            self.full_turns = max(self.full_turns, 1)

    def choose(
        self,
        peers: dict[str, Any],
        ready: set[int],
        now: float,
        api_fds: Iterable[int] = (),
        busy: bool = False,
    ) -> set[str]:
        """`busy`: callbacks other than route commands' are queued (a new connection's, say)."""
        foreign = ready.difference(self.settled_fds, api_fds)
        if busy or foreign:
            self.full_turns = 2
        if self.full_turns == 0 and now < self.next_full:
            chosen = {self.settled_fds[fd] for fd in ready if fd in self.settled_fds} | self.touched
            self.touched = set()
            return {key for key in chosen if key in peers}
        self.full_turns = max(0, self.full_turns - 1)
        self.touched = set()
        return self._scan(peers, ready, now)

    def _scan(self, peers: dict[str, Any], ready: set[int], now: float) -> set[str]:
        chosen = set()
        settled_fds = {}
        gap = FULL_SCAN_S
        for key, peer in peers.items():
            if peer.stopping():
                chosen.add(key)
                self.full_turns = max(self.full_turns, 1)
            elif peer.neighbor["passive"] and not peer.proto:
                continue
            elif peer.fsm != self.established:
                chosen.add(key)
                self.full_turns = max(self.full_turns, 1)
            else:
                if needs_turn(peer, now, ready, self.later):
                    chosen.add(key)
                fd = peer.socket()
                if fd != -1:
                    settled_fds[fd] = key
                gap = min(gap, quiet_turn_s(peer))
        self.settled_fds = settled_fds
        self.next_full = now + gap
        return chosen


# A command after its neighbour selector: announce or withdraw of routes, End-of-RIBs,
# refreshes and operational messages go through _Configuration.inject_*, which touch the peers
# they queue work for; anything else (teardown, watchdog, shutdown, ...) disturbs the turns.
ROUTE_COMMAND = re.compile(r"(?:^|\s)(?:announce|withdraw)\s+(?!watchdog)\S")
NEW_CONNECTIONS = "checking for new connection(s)"  # what the reactor schedules for its listener
NOT_A_ROUTE = "_routed_not_a_route"  # on ASYNC: ids of the queued callbacks no route command made
_TURNS: list[QuietTurns] = []  # the process's one reactor's


def is_route_command(command: str) -> bool:
    return bool(ROUTE_COMMAND.search(command))


def touch(names: Iterable[str]) -> None:
    """Peers a route command queued work for: they get the next turn."""
    if _TURNS:
        _TURNS[0].touch(names)


def disturb() -> None:
    if _TURNS:
        _TURNS[0].disturb()


def has_work(peer: Any) -> bool:
    """Whether an established peer has something queued or waiting on it."""
    if peer._teardown or peer._neighbor is not None or has_backlog(peer):
        return True
    neighbor = peer.neighbor
    return bool(neighbor.eor or neighbor.messages or neighbor.refresh or neighbor.rib.outgoing.pending())


QUIET_TURNS = "_routed_quiet"


def quiet_peers(reactor_class: Any, peer_class: Any, api_class: Any, async_class: Any) -> None:
    from exabgp.bgp.fsm import FSM  # type: ignore[import-untyped]
    from exabgp.reactor.peer import ACTION  # type: ignore[import-untyped]

    run, reload = peer_class.run, reactor_class.reload
    process, schedule = api_class.process, async_class.schedule

    def turns() -> QuietTurns:
        if not _TURNS:
            _TURNS.append(QuietTurns(FSM.ESTABLISHED, ACTION.LATER))
        return _TURNS[0]

    def run_noted(self: Any) -> Any:
        action = run(self)
        self.__dict__[LAST_TURN] = (action, time.monotonic())
        turns().ran(self, action)
        return action

    def active_peers(self: Any) -> set[str]:
        ready: set[int] = self.__dict__.pop(READY_FDS, set())
        queued = self.asynchronous._async
        not_a_route: set[int] = self.asynchronous.__dict__.setdefault(NOT_A_ROUTE, set())
        if not_a_route:
            not_a_route.intersection_update(id(callback) for _, callback in queued)
        return turns().choose(self._peers, ready, time.monotonic(), self.processes.fds, bool(not_a_route))

    def reload_noted(self: Any, *args: Any, **kwargs: Any) -> Any:
        turns().disturb()
        return reload(self, *args, **kwargs)

    def process_noted(self: Any, reactor: Any, service: Any, command: str) -> Any:
        if not is_route_command(command):
            turns().disturb()
        return process(self, reactor, service, command)

    def schedule_noted(self: Any, uid: Any, command: Any, callback: Any) -> Any:
        if not (isinstance(command, str) and is_route_command(command)):
            self.__dict__.setdefault(NOT_A_ROUTE, set()).add(id(callback))
            turns().disturb()
        if command == NEW_CONNECTIONS:
            # in front of the route commands queued: behind them (a reflector distributing
            # its table) the kernel's accept queue overflowed and clients came back on SYN
            # retransmission's doubling timers, their sessions up to two minutes late
            self._async.appendleft((uid, callback))
            return None
        return schedule(self, uid, command, callback)

    peer_class.run = run_noted
    reactor_class.active_peers = active_peers
    reactor_class.reload = reload_noted
    api_class.process = process_noted
    async_class.schedule = schedule_noted
