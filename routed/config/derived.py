"""What follows from a node's config without being written in it: each peer with its defaults
filled in, and the settings a field leaves to the node's role. Pure functions over NodeConfig."""

from __future__ import annotations

from ipaddress import IPv4Address

from routed.config.peering import Peer, PeerRange, PeerRegistry, PeerSettings
from routed.config.schema import NodeConfig
from routed.config.types import PeerKind, Role


def installs_learned_routes(cfg: NodeConfig) -> bool:
    if cfg.fib.install_learned is not None:
        return cfg.fib.install_learned
    return cfg.role is Role.NODE


def graceful_restart_with(cfg: NodeConfig, peer: PeerSettings) -> bool:
    """Whether we advertise graceful restart to `peer`, and so also help it through its own."""
    return cfg.bgp.graceful_restart.enabled if peer.graceful_restart is None else peer.graceful_restart


def long_lived_stale_for(cfg: NodeConfig, peer: PeerSettings) -> bool:
    """Whether `peer`'s routes turn long-lived stale when its restart time runs out."""
    wanted = peer.kind is PeerKind.REFLECTOR if peer.long_lived_stale is None else peer.long_lived_stale
    return wanted and cfg.bgp.long_lived_stale_time > 0


def effective_cluster_id(cfg: NodeConfig) -> IPv4Address | None:
    """RFC 4456: a reflector without an explicit cluster id uses its router id."""
    if cfg.role is not Role.REFLECTOR:
        return None
    return cfg.cluster_id or cfg.router_id


def resolved_peers(cfg: NodeConfig) -> tuple[Peer, ...]:
    """Explicit peers plus one mesh peer per other mesh node, each with its AS filled in."""
    peers = [
        p.model_copy(
            update={
                "asn": cfg.asn if p.asn is None else p.asn,
                "max_prefixes": cfg.bgp.max_prefixes if p.max_prefixes is None else p.max_prefixes,
            }
        )
        for p in cfg.listed_peers
    ]
    explicit = {p.address for p in peers}
    for address in cfg.mesh_nodes:
        if address not in cfg.fabric.addresses and address not in explicit:
            peers.append(
                Peer(address=address, asn=cfg.asn, kind=PeerKind.MESH, max_prefixes=cfg.bgp.max_prefixes)
            )
    return tuple(peers)


def resolved_ranges(cfg: NodeConfig) -> tuple[PeerRange, ...]:
    """The ranges of clients, each with its AS and limit filled in as a listed peer's are."""
    return tuple(
        r.model_copy(
            update={
                "asn": cfg.asn if r.asn is None else r.asn,
                "max_prefixes": cfg.bgp.max_prefixes if r.max_prefixes is None else r.max_prefixes,
            }
        )
        for r in cfg.peer_ranges
    )


def resolved_registry(cfg: NodeConfig) -> PeerRegistry | None:
    """The registry's clients' settings, their AS and limit filled in."""
    entry = cfg.peer_registry
    if entry is None:
        return None
    return entry.model_copy(
        update={
            "asn": cfg.asn if entry.asn is None else entry.asn,
            "max_prefixes": cfg.bgp.max_prefixes if entry.max_prefixes is None else entry.max_prefixes,
        }
    )
