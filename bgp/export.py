"""What each peer is sent: the export plan. Pure.

For every peer and prefix, what it should have (`desired`: our workloads, reflected routes,
the pool aggregates, nothing) against what it has been sent (its Adj-RIB-Out): only the
difference goes. Peers getting the same change share one group, as BIRD's attribute buckets
do: a reflector's clients mostly do, and ExaBGP spends about as long parsing a command as
sending its UPDATE. The groups are ExaBGP-agnostic; bgp.exabgp.commands writes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from bgp import reflection
from bgp.config import ExportMode, NeighborConfig
from bgp.decision import Selection
from bgp.model import Export, IPAddress, IPNetwork
from bgp.neighbor import Neighbor
from bgp.reflection import LocalSide, Role
from bgp.rib import Rib


def desired(
    me: LocalSide,
    target: NeighborConfig,
    role: Role,
    prefix: IPNetwork,
    local: Collection[IPNetwork],
    selection: Selection | None,
    roles: Mapping[IPAddress, Role],
) -> Export | None:
    """What `target` (whose reflection role is `role`) should have for `prefix`, if anything."""
    other_family = prefix.version != target.address.version
    if other_family and not (prefix.version == 4 and target.extended_next_hop):
        return None  # next hops are session addresses: each family over its own sessions
    if target.export is ExportMode.AGGREGATE:
        export = reflection.local_export(me, role) if prefix in me.pools else None
    else:
        best = selection.best if selection else None
        source = roles.get(best.peer.address) if best else None
        export = reflection.advertise(me, target.address, role, prefix in local, best, source)
    return _over_ipv6(export, target) if other_family else export


def _over_ipv6(export: Export | None, target: NeighborConfig) -> Export | None:
    """RFC 8950: an IPv4 route over an IPv6 session. "next-hop self" would not do: ExaBGP makes it
    the router id for an IPv4 route on an IPv6 session, so ours is our IPv6 session address."""
    if export is None or export.next_hop is not None or target.local_address is None:
        return export
    return dataclasses.replace(export, next_hop=target.local_address)


@dataclass(slots=True)
class ExportPlan:
    # (attributes, prefixes) -> the peers that get exactly that announcement
    announces: dict[tuple[Export, tuple[IPNetwork, ...]], list[IPAddress]] = field(default_factory=dict)
    # prefixes -> the peers they are withdrawn from
    withdraws: dict[tuple[IPNetwork, ...], list[IPAddress]] = field(default_factory=dict)


def everything(adj_rib_out: Mapping[IPAddress, Mapping[IPNetwork, Export]]) -> ExportPlan:
    """A new ExaBGP knows nothing: every peer's whole Adj-RIB-Out, grouped by attributes."""
    result = ExportPlan()
    for address, sent in adj_rib_out.items():
        grouped: dict[Export, list[IPNetwork]] = {}
        for prefix, attributes in sent.items():
            grouped.setdefault(attributes, []).append(prefix)
        for attributes, group in grouped.items():
            result.announces.setdefault((attributes, tuple(group)), []).append(address)
    return result


def refresh(
    neighbors: Mapping[IPAddress, Neighbor],
    prefixes: Iterable[IPNetwork],
    me: LocalSide,
    local: Collection[IPNetwork],
    rib: Rib,
    withdrawing: bool = False,
    only: Collection[IPAddress] | None = None,
) -> ExportPlan:
    """Plan what each neighbor ExaBGP knows is sent for these prefixes (`only`: just those
    neighbors): the difference between what it has (its Adj-RIB-Out) and what it should have,
    recorded in its Adj-RIB-Out (a neighbor added by a reload is skipped until ExaBGP has taken
    it, a range's client while its session is down)."""
    prefixes = list(prefixes)
    targets = [n for n in neighbors.values() if not n.pending and (only is None or n.address in only)]
    wanting = wanting_for(me, local, rib, neighbors, withdrawing)
    if len(prefixes) == 1:
        return _refresh_one(targets, prefixes[0], wanting)
    return _refresh_many(targets, prefixes, wanting)


Wanting = Callable[[IPNetwork], Callable[[Neighbor], Export | None] | None]


def wanting_for(
    me: LocalSide,
    local: Collection[IPNetwork],
    rib: Rib,
    neighbors: Mapping[IPAddress, Neighbor],
    withdrawing: bool,
) -> Wanting:
    """For a prefix, what each target should have of it (None: nothing, when withdrawing)."""
    if withdrawing:
        return lambda prefix: None
    return lambda prefix: _wanting(me, prefix, local, rib, neighbors)


def _refresh_one(targets: list[Neighbor], prefix: IPNetwork, wanting: Wanting) -> ExportPlan:
    """refresh() for one prefix, the reflector's everyday case (a change from one client to
    1,000 others): each target's entry read, compared and written once, peers grouped by what
    they get (an Export, its hash cached, or None), no per-target list or signature."""
    want = wanting(prefix)
    groups: dict[Export | None, list[IPAddress]] = {}
    for target in targets:
        wanted = want(target) if want is not None else None
        adj_rib_out = target.adj_rib_out
        sent = adj_rib_out.get(prefix)
        if wanted is sent or (wanted is not None and sent is not None and wanted == sent):
            continue
        if wanted is None:
            del adj_rib_out[prefix]
        else:
            adj_rib_out[prefix] = wanted
        peers = groups.get(wanted)
        if peers is None:
            groups[wanted] = [target.address]
        else:
            peers.append(target.address)
    result = ExportPlan()
    for wanted, peers in groups.items():
        if wanted is None:
            result.withdraws[(prefix,)] = peers
        else:
            result.announces[(wanted, (prefix,))] = peers
    return result


def _refresh_many(targets: list[Neighbor], prefixes: list[IPNetwork], wanting: Wanting) -> ExportPlan:
    # One change at a reflector of 1,000 clients asks this 1,000 times: per target only what
    # must be (its entry read, compared, written); neighbours are keyed by identity, and an
    # address or a prefix is hashed (in Python, by ipaddress) as few times as can be.
    changed: dict[Neighbor, list[tuple[int, Export | None]]] = {}
    for index, prefix in enumerate(prefixes):
        want = wanting(prefix)
        for target in targets:
            wanted = want(target) if want is not None else None
            sent = target.adj_rib_out.get(prefix)
            if wanted is sent or (wanted is not None and sent is not None and wanted == sent):
                continue
            entries = changed.get(target)
            if entries is None:
                changed[target] = [(index, wanted)]
            else:
                entries.append((index, wanted))

    # peers with the same changes share commands, in the neighbours' order
    groups: dict[tuple[tuple[int, Export | None], ...], list[IPAddress]] = {}
    for target in targets:
        entries = changed.get(target)
        if entries is None:
            continue
        adj_rib_out = target.adj_rib_out
        for index, wanted in entries:
            if wanted is None:
                del adj_rib_out[prefixes[index]]
            else:
                adj_rib_out[prefixes[index]] = wanted
        groups.setdefault(tuple(entries), []).append(target.address)

    result = ExportPlan()
    for signature, peers in groups.items():
        withdraw = tuple(prefixes[index] for index, wanted in signature if wanted is None)
        if withdraw:
            result.withdraws.setdefault(withdraw, []).extend(peers)
        announce: dict[Export, list[IPNetwork]] = {}
        for index, wanted in signature:
            if wanted is not None:
                announce.setdefault(wanted, []).append(prefixes[index])
        for attributes, group in announce.items():
            result.announces.setdefault((attributes, tuple(group)), []).extend(peers)
    return result


_KINDS: dict[tuple[object, ...], int] = {}  # what desired() reads of a target -> a small number


def _kind(target: Neighbor) -> int:
    config = target.config
    cached = target.export_kind
    if cached is not None and cached[0] is config:
        return cached[1]
    key = (config.role, config.export, config.extended_next_hop, config.address.version, config.local_address)
    kind = _KINDS.setdefault(key, len(_KINDS))
    target.export_kind = (config, kind)
    return kind


def _wanting(
    me: LocalSide,
    prefix: IPNetwork,
    local: Collection[IPNetwork],
    rib: Rib,
    neighbors: Mapping[IPAddress, Neighbor],
) -> Callable[[Neighbor], Export | None]:
    """What each target should have for `prefix`. A reflector's clients mostly want the same:
    `desired` reads of a target its role, export mode, family, local address and whether it
    is the best path's source, so it runs once per such kind of target, and the same Export
    (its hash cached) goes to each."""
    selection = rib.selection(prefix)
    best = selection.best if selection else None
    source = neighbors.get(best.peer.address) if best is not None else None
    roles = {source.address: source.config.role} if source is not None else {}
    memo: dict[tuple[int, bool], Export | None] = {}

    def want(target: Neighbor) -> Export | None:
        key = (_kind(target), target is source)
        try:
            return memo[key]
        except KeyError:
            config = target.config
            found = memo[key] = desired(me, config, config.role, prefix, local, selection, roles)
            return found

    return want
