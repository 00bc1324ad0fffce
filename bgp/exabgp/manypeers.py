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
A peer's own last turn notes when its timers fall due, its socket and whether it left work,
and its queues are read only after something may have filled them (`queued_work`): such a turn
looks at every peer. Any other turn (a socket or a timer woke it) looks only at the peers
bgp.exabgp.quietturns keeps as due, woken, asking or not established, and a full scan comes
at least every second (a form that looked only at woken peers, without the not-established
ones, left a connecting peer without turns in the lab tests, NOTES.md).
"""

from __future__ import annotations

import bisect
import itertools
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from bgp.exabgp.fanout import has_backlog
from bgp.exabgp.neighborranges import AddressIndex, address_index, address_range
from bgp.exabgp.quietturns import LAST_TURN, PEER_KEY, QuietTurns

READY_FDS = "_routed_ready"  # the descriptors the reactor's last poll reported (launch.wait_for_io)
QUIET_TURN_S = 0.3
QUIET_JITTER = 0.25  # an idle peer's turn comes up to this much of its interval early, at random

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


_PAIR_INDEX: list[Any] = [None, None, None]  # (the peers' names, their pair_index, address_index)


def _indexed(peers: Sequence[str]) -> tuple[tuple[str, ...], dict[str, set[str]]]:
    key = tuple(peers)
    if _PAIR_INDEX[0] != key:
        _PAIR_INDEX[0], _PAIR_INDEX[1], _PAIR_INDEX[2] = key, pair_index(key), None
    return key, _PAIR_INDEX[1]


_NONE: frozenset[str] = frozenset()


def match_addresses(peers: Sequence[str], selectors: Sequence[str]) -> list[str]:
    """match_neighbors(peers, [[s] for s in selectors]) for selectors that are each one
    `neighbor ADDRESS` pair (no wildcard), as routed writes them: the pair index looked up
    without a Python step per selector, 999 of them in a reflector's change. A selector
    `neighbor FIRST-LAST` (routed's route commands, commands._route_selector) matches every
    peer whose address is in that range; ExaBGP's own matching would match none."""
    _, index = _indexed(peers)
    matched = set().union(*map(index.get, selectors, itertools.repeat(_NONE)))
    ranges = [found for found in map(address_range, [s for s in selectors if "-" in s]) if found is not None]
    if ranges:
        if _PAIR_INDEX[2] is None:
            _PAIR_INDEX[2] = address_index(index)
        by_version: AddressIndex = _PAIR_INDEX[2]
        for version, low, high in ranges:
            numbers, names = by_version[version]
            matched.update(*names[bisect.bisect_left(numbers, low) : bisect.bisect_right(numbers, high)])
    return [peer for peer in dict.fromkeys(peers) if peer in matched]


def indexed_matcher(original_match: Callable[[Sequence[str], str], bool]) -> Matcher:
    """match_neighbors(peers, descriptions) with ExaBGP's semantics (limit.match_neighbor: the
    strings of a description must all match, up to a `neighbor *`, which matches any), through
    a pair index. A string that is not one `key value` pair takes the original matcher."""

    def match_neighbors(peers: Sequence[str], descriptions: Sequence[Sequence[str]]) -> Sequence[str]:
        if not descriptions:
            return peers
        key, index = _indexed(peers)
        matched: set[str] = set()
        for description in descriptions:
            candidates: set[str] | None = None
            for string in description:
                if string.strip() == "neighbor *":
                    break
                if string.count(" ") != 1 or _OTHER_SPACE.search(string):
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


_OTHER_SPACE = re.compile(r"[^\S ]")  # whitespace but a plain space: not one "key value" pair
_SELECTOR_KEYS = frozenset({"neighbor", "local-ip", "local-as", "peer-as", "router-id", "family-allowed"})


def linear_extract_neighbors(command: str) -> tuple[Any, str]:
    """limit.extract_neighbors, linear in the command's length. The original splits off each
    word of "neighbor A , neighbor B , ... announce ..." with str.split(' ', 2), copying the
    rest of the command every time: O(selectors x length), 20 MB copied per change for a
    reflector naming 999 clients. This walks the words once and answers as the original does,
    quirks included (a line ending in a selector's pair goes back to the rest of the line as
    it was at the last three-way split), but for one: where that rest is where it stands, the
    original loops forever, appending to a list until the process runs out of memory; this
    says the line has no command."""
    words = command.split(" ")
    if len(words) < 2 or words[0] != "neighbor":
        return [], command
    if len(words) < 3:
        return [], words[1]
    returned: list[list[str]] = []
    definition, at, rest = [f"neighbor {words[1]}"], 2, 1  # rest: the original's `remaining`
    if len(words) == 3:
        return definition, words[2]
    while True:
        left = len(words) - at
        if left < 2:
            return definition, " ".join(words[at:])
        key, value = words[at], words[at + 1]
        if left >= 3:
            rest = at + 2
        if key == ",":
            returned.append(definition)
            definition, at = [], at + 1
            continue
        if key not in _SELECTOR_KEYS:
            if definition:
                returned.append(definition)
            return returned, " ".join(words[at:])
        definition.append(f"{key} {value}")
        if left < 3 and rest == at:
            return [*returned, definition], ""  # where the original never returns
        at = rest


def indexed_neighbor_match() -> None:
    from exabgp.reactor.api.command import announce, limit, neighbor, rib  # type: ignore[import-untyped]

    matcher = indexed_matcher(limit.match_neighbor)
    for module in (limit, announce, rib):
        module.match_neighbors = matcher
    for module in (limit, announce, rib, neighbor):
        module.extract_neighbors = linear_extract_neighbors


PEERS_MEMO = "_routed_peers"  # on the Reactor: (service, its peers' names, what peers() said)


def cached_peers(reactor_class: Any) -> None:
    """Reactor.peers(service), which every API command asks (the peers it may name), walks every
    peer and reads its API settings: 1,000 reads per change at a reflector. Its answer is kept
    until the set of peers changes (compared by their names, in C) or a reload (which may
    give a peer another API setting) runs."""
    peers, reload = reactor_class.peers, reactor_class.reload

    def peers_cached(self: Any, service: str = "") -> list[str]:
        names = list(self._peers)
        memo = self.__dict__.get(PEERS_MEMO)
        if memo is None or memo[0] != service or memo[1] != names:
            memo = self.__dict__[PEERS_MEMO] = (service, names, peers(self, service))
        return list(memo[2])

    def reload_forgetting(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.__dict__.pop(PEERS_MEMO, None)
        try:
            return reload(self, *args, **kwargs)
        finally:
            self.__dict__.pop(PEERS_MEMO, None)

    reactor_class.peers = peers_cached
    reactor_class.reload = reload_forgetting


def peer_sets(configuration_class: Any) -> None:
    for method in ("inject_change", "inject_eor", "inject_operational", "inject_refresh"):
        original = getattr(configuration_class, method)

        def with_a_set(self: Any, peers: Any, what: Any, _original: Any = original) -> Any:
            queued_work()  # for quiet_peers: the next scan looks at every peer's queues
            return _original(self, peers if isinstance(peers, set | frozenset | dict) else set(peers), what)

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


def quiet_turn_s(peer: Any, jitter: Callable[[], float] = random.random) -> float:
    """How long an idle established peer may go without a turn: a tenth of its negotiated hold
    time (its keepalives, due every third, go out at most that late; a silent peer is noticed
    at most that late), between QUIET_TURN_S and 10 s, less up to QUIET_JITTER of it at random.

    Without the jitter, peers whose turns fell together (a reflector's 1,000 clients, which all
    had a turn when its table went out) stayed together: one reactor turn ran all of them
    every interval, ~0.1-0.2 s in which a change waited (a change p99 of 185 ms at 1,000
    clients where the p50 was 43). RFC 4271 (10) jitters its timers for the same reason."""
    try:
        hold = int(peer.proto.negotiated.holdtime)
    except (AttributeError, TypeError, ValueError):
        return QUIET_TURN_S
    interval = min(10.0, max(QUIET_TURN_S, hold / 10)) if hold else 10.0
    return interval * (1.0 - QUIET_JITTER * jitter())


_QUEUED = [0]  # bumped whenever something may have queued work for a peer outside its own turn


def queued_work() -> None:
    """Something may have queued work for peers (an API command, a callback, an injection, a
    reload, a connection, a write left half done): the next scan looks at every peer's queues."""
    _QUEUED[0] += 1


def has_work(peer: Any) -> bool:
    """Whether a peer has something queued or waiting on it (OutgoingRIB.pending() read
    without the call: this runs for every peer on every turn that follows a command)."""
    if peer._teardown or peer._neighbor is not None:
        return True
    neighbor = peer.neighbor
    if neighbor.eor or neighbor.messages or neighbor.refresh:
        return True
    outgoing = neighbor.rib.outgoing
    if outgoing._new_nlri or outgoing._refresh_changes:
        return True
    return has_backlog(peer)  # a direct write the kernel did not take whole (bgp.exabgp.fanout)


def needs_turn(peer: Any, now: float, ready: set[int], later: object, queues: bool = True) -> bool:
    """Whether an established peer has anything to do this turn (see quiet_peers). It reads
    what its last turn noted (LAST_TURN: the action it returned, when its timers fall due, its
    socket, whether it left work queued); its queues only with `queues`, since nothing else
    puts work there without a queued_work() first."""
    last = peer.__dict__.get(LAST_TURN)
    if last is None or last[0] != later or now >= last[1] or last[3]:
        return True
    if ready and last[2] in ready:
        return True
    return queues and has_work(peer)


def quiet_peers(reactor_class: Any, peer_class: Any, api_class: Any, async_class: Any) -> None:
    from exabgp.bgp.fsm import FSM  # type: ignore[import-untyped]
    from exabgp.reactor.peer import ACTION  # type: ignore[import-untyped]

    run, reload, handle_connection = peer_class.run, reactor_class.reload, reactor_class.handle_connection
    process, run_callbacks = api_class.process, async_class.run
    established, later = FSM.ESTABLISHED, ACTION.LATER
    scanned = [-1]  # the _QUEUED count at the last scan
    turns = QuietTurns()

    def run_noted(self: Any) -> Any:
        action = run(self)
        last = self.__dict__[LAST_TURN] = (
            action,
            time.monotonic() + quiet_turn_s(self),
            self.socket(),
            has_work(self),
        )
        key = self.__dict__.get(PEER_KEY)
        if key is not None:
            turns.note(key, self.fsm.state == established, last, later)
        return action

    def wants_turn(peer: Any) -> bool:
        """Whether a peer that is not established gets this turn: unless passive and unconnected."""
        return bool(peer.stopping() or not (peer.neighbor["passive"] and not peer.proto))

    def active_peers(self: Any) -> set[str]:
        now = time.monotonic()
        ready: set[int] = self.__dict__.pop(READY_FDS, set())
        queues = scanned[0] != _QUEUED[0] or self._stopping
        scanned[0] = _QUEUED[0]
        rebuild = turns.rebuild_due(now)
        if not queues and not rebuild:
            return turns.due_now(self._peers, ready, now, wants_turn)
        if rebuild:
            turns.clear(now)
        peers = set()
        for key, peer in self._peers.items():
            peer.__dict__[PEER_KEY] = key  # a peer new since the last scan is noted from its first turn
            # FSM compares through a method of its own: its state is a plain int
            is_established = peer.fsm.state == established
            if rebuild:
                turns.note(key, is_established, peer.__dict__.get(LAST_TURN), later)
            if is_established:
                if needs_turn(peer, now, ready, later, queues):
                    peers.add(key)
            elif wants_turn(peer):
                peers.add(key)
        return peers

    def noting(original: Any) -> Any:
        def noted(*args: Any, **kwargs: Any) -> Any:
            queued_work()
            return original(*args, **kwargs)

        return noted

    def callbacks_noted(self: Any) -> Any:
        if self._async:
            queued_work()
        return run_callbacks(self)

    peer_class.run = run_noted
    reactor_class.active_peers = active_peers
    reactor_class.reload = noting(reload)
    reactor_class.handle_connection = noting(handle_connection)
    api_class.process = noting(process)
    async_class.run = callbacks_noted
