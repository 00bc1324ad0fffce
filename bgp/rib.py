"""Adj-RIB-In per peer and the Loc-RIB built from it. No I/O.

Adj-RIB-In keeps every path a peer sent, accepted or not, so a change of policy
(a local workload appears or goes) re-judges them without asking the peer again.
Every mutation returns the prefixes whose selection changed, with the new
selection (None: no route left), so the caller programs exactly those.

Staleness is data here: when a peer restarts gracefully its paths are re-marked
stale (they stay selected unless a fresh path exists), each announcement from the
new session makes a path fresh again, and `sweep_stale` removes what was not
re-announced. When and why those happen (timers, End-of-RIB) is the caller's business.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace

from bgp.decision import Selection, select
from bgp.model import Attributes, IPAddress, IPNetwork, Path, Peer, Staleness, fresh_path, origin
from bgp.policy import ImportPolicy, Rejection, check_attributes, check_import, check_prefix

Changes = dict[IPNetwork, Selection | None]


@dataclass(frozen=True, slots=True)
class Rejected:
    peer: IPAddress
    prefix: IPNetwork
    reason: Rejection
    origin: IPAddress | None = None  # the node the route comes from (bgp.model.origin)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The attribute checks' answer for one Attributes object (held, so its identity is not reused)."""

    attrs: Attributes | None
    reason: Rejection | None


@dataclass(slots=True)
class UpdateResult:
    changes: Changes = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    # prefixes whose accepted paths changed, even where the best path did not
    touched: set[IPNetwork] = field(default_factory=set)


class Rib:
    def __init__(self, policy: ImportPolicy, max_paths: int = 1) -> None:
        self.policy = policy
        self.max_paths = max_paths
        self._adj_in: dict[IPAddress, dict[IPNetwork, Path]] = {}
        # accepted paths per prefix, at most one per peer; a tuple, as most prefixes have one
        # path and a dict per prefix was a third of the RIB's memory at 100k routes
        self._accepted: dict[IPNetwork, tuple[Path, ...]] = {}
        self._loc: dict[IPNetwork, Selection] = {}
        self._stale: dict[IPAddress, set[IPNetwork]] = {}  # per peer: its paths not fresh
        self.rejected_total: Counter[Rejection] = Counter()
        # accepted prefixes per peer, kept as paths come and go: status and metrics read it
        # without walking a peer's table (a scrape costs O(peers), not O(routes))
        self._accepted_by_peer: Counter[IPAddress] = Counter()
        # IPv6 prefixes per peer in its Adj-RIB-In (the rest are IPv4): a receive limit counts
        # each family apart, as BIRD's per channel and FRR's per address family
        self._held6: Counter[IPAddress] = Counter()

    def loc_rib(self) -> dict[IPNetwork, Selection]:
        return dict(self._loc)

    def selection(self, prefix: IPNetwork) -> Selection | None:
        return self._loc.get(prefix)

    def received_within(self, network: IPNetwork) -> set[IPNetwork]:
        """Every received prefix inside `network` (e.g. a block we just took), from any peer."""
        return {
            prefix
            for table in self._adj_in.values()
            for prefix in table
            if prefix.version == network.version and prefix.subnet_of(network)  # type: ignore[arg-type]
        }

    def paths(self, prefix: IPNetwork) -> tuple[Path, ...]:
        """The accepted paths of a prefix, from every peer."""
        return self._accepted.get(prefix, ())

    def announces(self, peer: IPAddress, prefix: IPNetwork) -> Path | None:
        """What `peer` told us of `prefix`, accepted or not."""
        return self._adj_in.get(peer, {}).get(prefix)

    def adj_rib_in(self, peer: IPAddress) -> dict[IPNetwork, Path]:
        return dict(self._adj_in.get(peer, {}))

    def holds(self, peer: IPAddress) -> Collection[IPNetwork]:
        """The prefixes `peer` has announced to us, as a live view (no copy)."""
        return self._adj_in.get(peer, {}).keys()

    def holds_by_family(self, peer: IPAddress) -> dict[int, int]:
        """How many IPv4 and IPv6 prefixes `peer` has announced to us (kept, not counted)."""
        v6 = self._held6.get(peer, 0)
        return {4: len(self._adj_in.get(peer, ())) - v6, 6: v6}

    def _reselect(self, prefixes: Iterable[IPNetwork], changes: Changes) -> None:
        for prefix in prefixes:
            selection = select(self._accepted.get(prefix, ()), self.max_paths)
            if selection != self._loc.get(prefix):
                if selection is None:
                    del self._loc[prefix]
                else:
                    self._loc[prefix] = selection
                changes[prefix] = selection

    def _unaccept(self, peer: IPAddress, prefix: IPNetwork) -> bool:
        paths = self._accepted.get(prefix, ())
        kept = tuple(p for p in paths if p.peer.address != peer)
        if len(kept) == len(paths):
            return False
        if kept:
            self._accepted[prefix] = kept
        else:
            del self._accepted[prefix]
        left = self._accepted_by_peer[peer] = self._accepted_by_peer[peer] - 1
        if not left:
            del self._accepted_by_peer[peer]
        return True

    def _accept(self, path: Path) -> None:
        held = self._accepted.get(path.prefix)
        if not held:  # the common case in a full table: the prefix's first path
            self._accepted[path.prefix] = (path,)
            self._accepted_by_peer[path.peer.address] += 1
            return
        others = tuple(p for p in held if p.peer.address != path.peer.address)
        if len(others) == len(held):  # this peer's first accepted path for the prefix
            self._accepted_by_peer[path.peer.address] += 1
        self._accepted[path.prefix] = (*others, path)

    def _is_accepted(self, peer: IPAddress, prefix: IPNetwork) -> bool:
        return any(p.peer.address == peer for p in self._accepted.get(prefix, ()))

    def _judge(
        self, path: Path, result: UpdateResult, count: bool = True, attrs_verdict: Verdict | None = None
    ) -> bool:
        if attrs_verdict is None:
            reason = check_import(self.policy, path.prefix, path.attrs, path.peer)
        else:
            reason = check_prefix(self.policy, path.prefix) or attrs_verdict.reason
        if reason is None:
            return True
        if count:
            self.rejected_total[reason] += 1
            result.rejected.append(Rejected(path.peer.address, path.prefix, reason, origin(path)))
        return False

    def update(
        self,
        peer: Peer,
        announced: Iterable[tuple[IPNetwork, Attributes]] = (),
        withdrawn: Iterable[IPNetwork] = (),
    ) -> UpdateResult:
        result = UpdateResult()
        touched: set[IPNetwork] = set()
        table = self._adj_in.setdefault(peer.address, {})
        stale = self._stale.get(peer.address)
        for prefix in withdrawn:
            if stale:
                stale.discard(prefix)
            held = table.pop(prefix, None)
            if held is not None and prefix.version == 6:
                self._held6[peer.address] -= 1
            # from here on the object every table of ours holds as the key: later lookups (here,
            # in the FIB, towards peers) then match by identity, not by a call to __eq__
            if held is not None and self._unaccept(peer.address, held.prefix):
                touched.add(held.prefix)
        verdict = Verdict(None, None)
        for prefix, attrs in announced:
            if stale:
                stale.discard(prefix)
            held = table.get(prefix)
            path = fresh_path(prefix if held is None else held.prefix, peer, attrs)
            if held == path:
                continue
            prefix = path.prefix
            table[prefix] = path
            if held is None and prefix.version == 6:
                self._held6[peer.address] += 1
            if attrs is not verdict.attrs:  # the NLRI of one UPDATE share one Attributes object
                verdict = Verdict(attrs, check_attributes(self.policy, attrs, peer))
            if self._judge(path, result, attrs_verdict=verdict):
                self._accept(path)
                touched.add(prefix)
            elif self._unaccept(peer.address, prefix):  # replaces an earlier, acceptable path
                touched.add(prefix)
        self._reselect(touched, result.changes)
        result.touched = touched
        return result

    def peer_down(self, peer: IPAddress) -> Changes:
        """Everything the peer told us goes at once."""
        changes: Changes = {}
        self._stale.pop(peer, None)
        self._held6.pop(peer, None)
        table = self._adj_in.pop(peer, {})
        touched = [prefix for prefix in table if self._unaccept(peer, prefix)]
        self._reselect(touched, changes)
        return changes

    # --- graceful restart --------------------------------------------------------

    def mark_stale(self, peer: IPAddress, level: Staleness = Staleness.STALE) -> Changes:
        """Keep every path of `peer` at `level` or worse: they forward on, but lose to any fresher path."""
        changes: Changes = {}
        table = self._adj_in.get(peer)
        if not table:
            return changes
        stale = self._stale.setdefault(peer, set())
        touched: list[IPNetwork] = []
        for prefix, path in table.items():
            if path.stale >= level:
                continue
            kept = replace(path, stale=level)
            table[prefix] = kept
            stale.add(prefix)
            if self._is_accepted(peer, prefix):
                self._accept(kept)
                touched.append(prefix)
        self._reselect(touched, changes)
        return changes

    def sweep_stale(self, peer: IPAddress, version: int | None = None) -> Changes:
        """Remove the peer's paths still stale (of one IP version, or all): not vouched for again."""
        changes: Changes = {}
        stale = self._stale.get(peer)
        if not stale:
            return changes
        gone = [p for p in stale if version is None or p.version == version]
        stale.difference_update(gone)
        if not stale:
            del self._stale[peer]
        table = self._adj_in.get(peer, {})
        touched = []
        for prefix in gone:
            if table.pop(prefix, None) is not None and prefix.version == 6:
                self._held6[peer] -= 1
            if self._unaccept(peer, prefix):
                touched.append(prefix)
        self._reselect(touched, changes)
        return changes

    def stale_count(self, peer: IPAddress | None = None) -> int:
        if peer is None:
            return sum(len(s) for s in self._stale.values())
        return len(self._stale.get(peer, ()))

    def accepted_count(self, peer: IPAddress) -> int:
        return self._accepted_by_peer.get(peer, 0)

    def received_count(self, peer: IPAddress) -> int:
        return len(self._adj_in.get(peer, ()))

    def loc_rib_size(self) -> int:
        return len(self._loc)

    def stale_peers(self) -> set[IPAddress]:
        return set(self._stale)

    def set_policy(self, policy: ImportPolicy, prefixes: Iterable[IPNetwork] | None = None) -> UpdateResult:
        """Re-judge received paths (e.g. a new local workload now shadows a learned /32).

        `prefixes` limits the work to the prefixes the policy change can affect: a workload
        added next to 100k learned routes must not re-judge all of them.
        """
        self.policy = policy
        result = UpdateResult()
        touched: set[IPNetwork] = set()
        only = None if prefixes is None else set(prefixes)
        for peer_address, table in self._adj_in.items():
            paths = table.items() if only is None else [(p, table[p]) for p in only if p in table]
            for prefix, path in paths:
                accepted = self._is_accepted(peer_address, prefix)
                if self._judge(path, result, count=accepted):
                    if not accepted:
                        self._accept(path)
                        touched.add(prefix)
                elif accepted:
                    self._unaccept(peer_address, prefix)
                    touched.add(prefix)
        self._reselect(touched, result.changes)
        result.touched = touched
        return result
