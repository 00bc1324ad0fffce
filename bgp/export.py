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
    # Adj-RIB-Out after the plan, per peer: the new entry, or None once withdrawn
    sent: dict[IPAddress, dict[IPNetwork, Export | None]] = field(default_factory=dict)
    # (attributes, prefixes) -> the peers that get exactly that announcement
    announces: dict[tuple[Export, tuple[IPNetwork, ...]], list[IPAddress]] = field(default_factory=dict)
    # prefixes -> the peers they are withdrawn from
    withdraws: dict[tuple[IPNetwork, ...], list[IPAddress]] = field(default_factory=dict)


def plan(
    adj_rib_out: Mapping[IPAddress, Mapping[IPNetwork, Export]],
    prefixes: Iterable[IPNetwork],
    wants: Callable[[IPAddress], Callable[[IPNetwork], Export | None]],
) -> ExportPlan:
    """The difference, for these prefixes, between what each peer has and what it should have
    (`wants(peer)` says, for each prefix, what that peer should have)."""
    prefixes = list(prefixes)
    result = ExportPlan()
    for address, sent in adj_rib_out.items():
        want = wants(address)
        announce: dict[Export, list[IPNetwork]] = {}
        withdraw: list[IPNetwork] = []
        changed: dict[IPNetwork, Export | None] = {}
        for prefix in prefixes:
            wanted = want(prefix)
            if wanted == sent.get(prefix):
                continue
            changed[prefix] = wanted
            if wanted is None:
                withdraw.append(prefix)
            else:
                announce.setdefault(wanted, []).append(prefix)
        if not changed:
            continue
        result.sent[address] = changed
        if withdraw:
            result.withdraws.setdefault(tuple(withdraw), []).append(address)
        for attributes, group in announce.items():
            result.announces.setdefault((attributes, tuple(group)), []).append(address)
    return result


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
    neighbors), and record it in their Adj-RIB-Out (a neighbor added by a reload is skipped
    until ExaBGP has taken it, a range's client while its session is down)."""
    prefixes = list(prefixes)
    selections = {prefix: rib.selection(prefix) for prefix in prefixes}
    roles = {a: n.config.role for a, n in neighbors.items()}
    targets = {a: n for a, n in neighbors.items() if not n.pending and (only is None or a in only)}

    # A reflector's clients mostly want the same thing for a prefix: what `desired` reads of a
    # target is its role, export mode, family and whether it is the best path's source, so it
    # runs once per such kind of target, not once per target (1,000 clients: ~20 ms a change).
    # The same object then goes to each, and its hash is computed once (Export caches it).
    memo: dict[tuple[object, ...], Export | None] = {}

    def wants(address: IPAddress) -> Callable[[IPNetwork], Export | None]:
        config = targets[address].config
        role = roles[address]
        version = config.address.version

        def want(prefix: IPNetwork) -> Export | None:
            selection = selections[prefix]
            best = selection.best if selection else None
            other_family = prefix.version != version
            key = (
                prefix,
                role,
                config.export,
                config.extended_next_hop,
                other_family,
                config.local_address if other_family else None,
                best is not None and best.peer.address == address,
            )
            try:
                return memo[key]
            except KeyError:
                found = memo[key] = desired(me, config, role, prefix, local, selection, roles)
                return found

        return (lambda prefix: None) if withdrawing else want

    result = plan({a: n.adj_rib_out for a, n in targets.items()}, prefixes, wants)
    for address, sent in result.sent.items():
        adj_rib_out = targets[address].adj_rib_out
        for prefix, attributes in sent.items():
            if attributes is None:
                del adj_rib_out[prefix]
            else:
                adj_rib_out[prefix] = attributes
    return result
