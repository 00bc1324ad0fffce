"""The node's config as the BGP speaker's records (bgp.config): every default resolved here,
so that bgp never reads routed's schema."""

from __future__ import annotations

from bgp import config as bgp
from routed.config import NodeConfig, Peer, Role
from routed.config.derived import (
    effective_cluster_id,
    graceful_restart_with,
    installs_learned_routes,
    long_lived_stale_for,
    resolved_peers,
)
from routed.config.reload import ReloadPlan


def neighbor_config(cfg: NodeConfig, peer: Peer, session_families: set[int]) -> bgp.NeighborConfig:
    """One peer of `resolved_peers(cfg)` (its AS and limit filled in); `session_families`: the IP
    versions of all the node's sessions."""
    limit = peer.max_prefixes
    return bgp.NeighborConfig(
        address=peer.address,
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
        local_address=cfg.fabric.address_for(peer.address.version),
        # IPv4 goes over the IPv4 sessions; a node with none (an IPv6-only fabric) sends it over
        # its IPv6 sessions with IPv6 next hops (RFC 8950)
        extended_next_hop=peer.address.version == 6 and 4 not in session_families,
    )


def speaker_config(cfg: NodeConfig) -> bgp.SpeakerConfig:
    gr = cfg.bgp.graceful_restart
    peers = resolved_peers(cfg)
    families: set[int] = {p.address.version for p in peers}
    return bgp.SpeakerConfig(
        name=cfg.name,
        asn=cfg.asn,
        router_id=cfg.router_id,
        fabric_address=cfg.fabric.address,
        fabric_address6=cfg.fabric.address6,
        pools=cfg.pool_networks,
        neighbors=tuple(neighbor_config(cfg, p, families) for p in peers),
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
    )
