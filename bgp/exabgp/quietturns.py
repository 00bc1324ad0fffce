"""The peers a reactor turn must run, kept up to date as their turns end (bgp.exabgp.manypeers
`quiet_peers` uses it): a turn that one socket or one timer woke looks at those peers only."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

LAST_TURN = "_routed_turn"  # a peer's last turn: (its ACTION, timers due at, its socket, work left)
PEER_KEY = "_routed_key"  # on a Peer: its key in the reactor's peers, noted by each full scan
FULL_SCAN_S = 1.0  # a turn looks at every peer at least this often, whatever woke it


class QuietTurns:
    """Which peers a turn must run, kept as their turns end, so that a turn that a socket or a
    timer woke looks at those peers only (O(1) in the number of peers), not at all 1,000 (~1 ms
    a wake-up at 1,000 clients, ~33 wake-ups a second when their keepalives come one by one):
    each established peer's next quiet turn in a heap, the peers whose last turn asked for
    another (not LATER, or work left) and those not established in sets, and each socket's
    peer. Anything that gives a peer work outside its own turn calls queued_work(), which makes
    the next turn a full scan, as does FULL_SCAN_S (the structures are rebuilt then: a missed
    note costs at most that long)."""

    def __init__(self) -> None:
        self.due: list[tuple[float, str]] = []
        self.asking: set[str] = set()
        self.unsettled: set[str] = set()
        self.socket_key: dict[int, str] = {}
        self.rebuild_at = 0.0

    def rebuild_due(self, now: float) -> bool:
        return now >= self.rebuild_at

    def clear(self, now: float) -> None:
        self.due, self.asking, self.unsettled, self.socket_key = [], set(), set(), {}
        self.rebuild_at = now + FULL_SCAN_S

    def note(self, key: str, is_established: bool, last: Any, later: object) -> None:
        """A peer's state after its turn (or as a full scan finds it)."""
        self.asking.discard(key)
        self.unsettled.discard(key)
        if last is not None and last[2] not in (None, -1):
            self.socket_key[last[2]] = key
        if not is_established:
            self.unsettled.add(key)
        elif last is None or last[0] != later or last[3]:
            self.asking.add(key)
        else:
            heapq.heappush(self.due, (last[1], key))

    def due_now(
        self, peers: dict[str, Any], ready: set[int], now: float, wants_turn: Callable[[Any], bool]
    ) -> set[str]:
        """The peers this turn runs: those asking, those not established that want a turn, those
        whose socket woke the poll and those whose quiet turn is due."""
        found = {key for key in self.asking if key in peers}
        found.update(key for key in self.unsettled if key in peers and wants_turn(peers[key]))
        for fd in ready:
            key = self.socket_key.get(fd)
            if key is not None and key in peers:
                found.add(key)
        due = self.due
        while due and due[0][0] <= now:
            at, key = heapq.heappop(due)
            peer = peers.get(key)
            last = peer.__dict__.get(LAST_TURN) if peer is not None else None
            if last is not None and last[1] == at:  # else a later turn has noted another time
                found.add(key)
        return found
