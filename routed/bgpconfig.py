"""The node's config as the BGP speaker's records (bgp.config): every default resolved here,
so that bgp never reads routed's schema."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from bgp import config as bgp
from routed.config import NodeConfig, Peer, Role
from routed.config.derived import (
    effective_cluster_id,
    graceful_restart_with,
    installs_learned_routes,
    long_lived_stale_for,
    resolved_peers,
    resolved_ranges,
    resolved_registry,
)
from routed.config.peering import PeerRange, PeerSettings
from routed.config.reload import ReloadPlan
from routed.config.types import IPAddress


def neighbor_config(
    cfg: NodeConfig, peer: PeerSettings, session_families: set[int], address: IPAddress | None = None
) -> bgp.NeighborConfig:
    """One peer of `resolved_peers(cfg)` (its AS and limit filled in), or with `address` one of
    `resolved_ranges(cfg)`; `session_families`: the IP versions of all the node's sessions."""
    if address is None:
        assert isinstance(peer, Peer)
        address = peer.address
    limit = peer.max_prefixes
    return bgp.NeighborConfig(
        address=address,
        asn=peer.asn if peer.asn is not None else cfg.asn,
        kind=bgp.PeerKind(peer.kind.value),
        description=peer.description,
        export=bgp.ExportMode(peer.export.value),
        max_prefixes=None
        if limit is None
        else bgp.ReceiveLimit(limit.limit, limit.action, limit.restart_after),
        hold_time=peer.hold_time if peer.hold_time is not None else cfg.bgp.hold_time,
        graceful_restart=graceful_restart_with(cfg, peer),
        long_lived_stale=long_lived_stale_for(cfg, peer),
        ttl_security=peer.ttl_security,
        md5_password=peer.md5_password(),
        local_address=cfg.fabric.address_for(address.version),
        # IPv4 goes over the IPv4 sessions; a node with none (an IPv6-only fabric) sends it over
        # its IPv6 sessions with IPv6 next hops (RFC 8950)
        extended_next_hop=address.version == 6 and 4 not in session_families,
    )


def range_config(cfg: NodeConfig, peer: PeerRange, session_families: set[int]) -> bgp.NeighborRange:
    template = neighbor_config(cfg, peer, session_families, peer.range.network_address)
    return bgp.NeighborRange(prefix=peer.range, template=template)


def speaker_config(cfg: NodeConfig, registered: Iterable[IPAddress] = ()) -> bgp.SpeakerConfig:
    """`registered`: the clients the node registry gives (routed.registry), if the config
    takes clients from it."""
    gr = cfg.bgp.graceful_restart
    peers, ranges, registry = resolved_peers(cfg), resolved_ranges(cfg), resolved_registry(cfg)
    clients = sorted(registered, key=lambda a: (a.version, int(a))) if registry is not None else []
    families: set[int] = {p.address.version for p in peers} | {r.range.version for r in ranges}
    families |= {a.version for a in clients}
    listed = tuple(neighbor_config(cfg, p, families) for p in peers)
    if registry is not None:
        listed += tuple(
            dataclasses.replace(neighbor_config(cfg, registry, families, address), registered=True)
            for address in clients
        )
    return bgp.SpeakerConfig(
        name=cfg.name,
        asn=cfg.asn,
        router_id=cfg.router_id,
        fabric_address=cfg.fabric.address,
        fabric_address6=cfg.fabric.address6,
        pools=cfg.pool_networks,
        neighbors=listed,
        ranges=tuple(range_config(cfg, r, families) for r in ranges),
        reflector=cfg.role is Role.REFLECTOR,
        cluster_id=effective_cluster_id(cfg),
        timers=bgp.RestartTimers(
            restart_time=gr.restart_time,
            stalepath_time=gr.stalepath_time,
            select_defer_time=gr.select_defer_time,
            long_lived_stale_time=cfg.bgp.long_lived_stale_time,
        ),
        max_paths=cfg.bgp.max_paths,
        local_preference=cfg.bgp.local_preference,
        communities=tuple((int(a), int(b)) for a, b in (c.split(":") for c in cfg.bgp.communities)),
        import_allow=tuple(cfg.bgp.import_allow),
        allow_default_route=cfg.bgp.allow_default_route,
        next_hops=tuple(cfg.bgp.next_hops),
        block_lengths=(cfg.ipam.block_size, cfg.ipam.block_size_v6),
        installs_learned_routes=installs_learned_routes(cfg),
        reactor_speed=cfg.bgp.reactor_speed,
    )


def reconfiguration(plan: ReloadPlan) -> bgp.Reconfiguration:
    return bgp.Reconfiguration(
        added=tuple(p.address for p in plan.peers_added),
        removed=tuple(p.address for p in plan.peers_removed),
        reset=tuple(p.address for p in plan.peers_changed),
        policy_changed=plan.policy_changed,
        export_changed=plan.export_changed,
        ranges_changed=plan.ranges_changed,
    )
