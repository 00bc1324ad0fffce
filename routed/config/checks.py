"""Rules between fields that a per-field schema cannot express.

Each problem carries the field path it is about, so the loader can point at
the right line of the file.
"""

from __future__ import annotations

from routed.config.derived import installs_learned_routes, resolved_peers
from routed.config.document import FieldProblem
from routed.config.peering import ExportMode, PeerRange, PeerRegistry
from routed.config.schema import NodeConfig
from routed.config.services import IpamMode
from routed.config.types import IBGP_KINDS, PeerKind, Role
from routed.config.yamlmarks import Path


def cross_field_problems(cfg: NodeConfig) -> list[FieldProblem]:
    problems: list[FieldProblem] = []

    def add(path: Path, message: str) -> None:
        problems.append(FieldProblem(path, message))

    if cfg.role is Role.NODE and cfg.cluster_id is not None:
        add(("cluster_id",), "cluster_id is only for role: reflector; remove it or set role: reflector")
    if cfg.mesh == "full" and not cfg.mesh_nodes:
        add(("mesh",), "mesh: full needs mesh_nodes, the fabric addresses of every mesh node")
    if cfg.mesh == "off" and cfg.mesh_nodes:
        add(("mesh_nodes",), "mesh_nodes is set but mesh is off; set mesh: full or remove mesh_nodes")

    for index, pool in enumerate(cfg.pool_networks):
        for earlier_index, earlier in enumerate(cfg.pool_networks[:index]):
            if pool.version == earlier.version and pool.overlaps(earlier):
                add(
                    ("pools", index),
                    f"pool {pool} overlaps pools[{earlier_index}] {earlier}; "
                    "every address must belong to exactly one pool",
                )
        for address in cfg.fabric.addresses:
            if address in pool:
                add(
                    ("pools", index),
                    f"pool {pool} contains the fabric address {address}; pools are for workloads only",
                )
        sessions = {p.address.version for p in resolved_peers(cfg)}
        if pool.version == 6 and sessions and 6 not in sessions:
            add(
                ("pools", index),
                f"pool {pool} is IPv6 but no peer is: other hosts could not reach these containers "
                "(IPv6 routes need IPv6 next hops, and go over IPv6 sessions). Give the fabric an "
                "IPv6 address (fabric.address6) and peer with your reflectors' IPv6 addresses too, "
                "or drop the IPv6 pool",
            )

    problems += _ipam_problems(cfg)
    problems += _nat_problems(cfg)

    own_addresses = {*cfg.fabric.addresses, cfg.router_id}
    seen: dict[object, int] = {}
    for index, peer in enumerate(cfg.peers):
        where = ("peers", index)
        if isinstance(peer, PeerRange):
            problems += _range_problems(cfg, index, peer)
            continue
        if isinstance(peer, PeerRegistry):
            problems += _registry_problems(cfg, index, peer)
            continue
        if peer.address in seen:
            add(
                (*where, "address"),
                f"peer {peer.address} is listed twice (also peers[{seen[peer.address]}]); keep one",
            )
        seen.setdefault(peer.address, index)
        if peer.address in own_addresses:
            add(
                (*where, "address"),
                f"peer {peer.address} is this node's own address; a node cannot peer with itself",
            )
        if cfg.fabric.address_for(peer.address.version) is None:
            add(
                (*where, "address"),
                f"peer {peer.address} is IPv{peer.address.version} but the fabric has no "
                f"IPv{peer.address.version} address; sessions run from the fabric address of "
                "their family (fabric.address, and fabric.address6 on a dual-stack fabric)",
            )
        asn = peer.asn if peer.asn is not None else cfg.asn
        if peer.kind in IBGP_KINDS and asn != cfg.asn:
            add(
                (*where, "asn"),
                f"a {peer.kind.value} peer is iBGP and must have our AS {cfg.asn}, not {asn}; "
                "use kind: ebgp for another AS",
            )
        if peer.kind is PeerKind.EBGP and asn == cfg.asn:
            add(
                (*where, "asn"),
                f"an ebgp peer needs an AS other than ours ({cfg.asn}); use an iBGP kind for our own AS",
            )
        if peer.kind in (PeerKind.CLIENT, PeerKind.NONCLIENT) and cfg.role is not Role.REFLECTOR:
            add(
                (*where, "kind"),
                f"kind: {peer.kind.value} is only for role: reflector; a node peers with kind: reflector",
            )
        if peer.export is ExportMode.AGGREGATE and peer.kind is not PeerKind.EBGP:
            add((*where, "export"), "export: aggregate is for ebgp peers; iBGP peers need every /32")
        if peer.export is ExportMode.AGGREGATE and not installs_learned_routes(cfg):
            add(
                (*where, "export"),
                "export: aggregate attracts traffic for the whole pool, so this node must "
                "forward it: set fib.install_learned: true",
            )
        if peer.kind is PeerKind.REFLECTOR and cfg.role is Role.REFLECTOR:
            add(
                (*where, "kind"),
                "a reflector peers with another reflector as kind: nonclient, not kind: reflector",
            )

    mesh_seen: set[object] = set()
    for index, address in enumerate(cfg.mesh_nodes):
        if address in mesh_seen:
            add(("mesh_nodes", index), f"mesh node {address} is listed twice; keep one")
        mesh_seen.add(address)
        if address in seen and address not in cfg.fabric.addresses:
            add(("mesh_nodes", index), f"mesh node {address} is also in peers[{seen[address]}]; list it once")
        if cfg.fabric.address_for(address.version) is None:
            add(
                ("mesh_nodes", index),
                f"mesh node {address} is IPv{address.version} but the fabric has no IPv{address.version} "
                "address to peer from (fabric.address, fabric.address6)",
            )

    ips_seen: dict[object, str] = {}
    ids_seen: set[str] = set()
    for index, workload in enumerate(cfg.workloads):
        where = ("workloads", index)
        if workload.id in ids_seen:
            add((*where, "id"), f"workload id {workload.id!r} is used twice; ids must be unique")
        ids_seen.add(workload.id)
        for ip_index, ip in enumerate(workload.ips):
            if not any(ip in pool for pool in cfg.pool_networks):
                pools = ", ".join(str(p) for p in cfg.pool_networks)
                add(
                    (*where, "ips", ip_index),
                    f"{ip} is outside every pool ({pools}); pick an address from a pool",
                )
            if ip in ips_seen:
                add((*where, "ips", ip_index), f"{ip} is already given to workload {ips_seen[ip]!r}")
            ips_seen.setdefault(ip, workload.id)
    return problems


def _ipam_problems(cfg: NodeConfig) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    ipam = cfg.ipam
    for index, pool in enumerate(cfg.pool_networks):
        length = ipam.block_length(pool.version)
        if ipam.uses_blocks and pool.prefixlen > length:
            field = "block_size" if pool.version == 4 else "block_size_v6"
            problems.append(
                FieldProblem(
                    ("pools", index),
                    f"pool {pool} is smaller than one block (/{length}); "
                    f"widen the pool or lower ipam.{field}",
                )
            )
    if ipam.mode is not IpamMode.STATIC and ipam.blocks:
        problems.append(
            FieldProblem(
                ("ipam", "blocks"),
                f"ipam.blocks is only for mode: static (mode is {ipam.mode.value}); "
                "remove it or set mode: static",
            )
        )
    if ipam.mode is IpamMode.STATIC and not ipam.blocks and cfg.role is Role.NODE:
        problems.append(
            FieldProblem(
                ("ipam", "blocks"), "mode: static needs this node's blocks, e.g. blocks: [10.65.1.0/26]"
            )
        )
    if ipam.mode is IpamMode.ETCD and ipam.etcd is None:
        problems.append(
            FieldProblem(("ipam", "etcd"), "mode: etcd needs etcd: {endpoints: [host:port, ...]}")
        )
    if ipam.mode is not IpamMode.ETCD and ipam.etcd is not None:
        problems.append(
            FieldProblem(
                ("ipam", "etcd"), "ipam.etcd is only read in mode: etcd; remove it or set mode: etcd"
            )
        )
    for index, block in enumerate(ipam.blocks):
        where = ("ipam", "blocks", index)
        length = ipam.block_length(block.version)
        if block.prefixlen != length:
            problems.append(
                FieldProblem(
                    where,
                    f"block {block} is a /{block.prefixlen}; blocks are /{length} "
                    f"(ipam.block_size{'' if block.version == 4 else '_v6'}); list /{length}s",
                )
            )
        if not any(block.version == p.version and block.subnet_of(p) for p in cfg.pool_networks):  # type: ignore[arg-type]
            pools = ", ".join(str(p) for p in cfg.pool_networks)
            problems.append(FieldProblem(where, f"block {block} is outside every pool ({pools})"))
        for earlier_index, earlier in enumerate(ipam.blocks[:index]):
            if block.version == earlier.version and block.overlaps(earlier):
                problems.append(
                    FieldProblem(
                        where, f"block {block} overlaps ipam.blocks[{earlier_index}] {earlier}; list it once"
                    )
                )
    return problems


def _nat_problems(cfg: NodeConfig) -> list[FieldProblem]:
    """A NAT source address inside a pool; an exclusion that is a pool already."""
    problems: list[FieldProblem] = []
    for index, pool in enumerate(cfg.pools):
        address = pool.nat_outgoing_address
        if address is not None and any(address in other for other in cfg.pool_networks):
            problems.append(
                FieldProblem(
                    ("pools", index, "nat_outgoing_address"),
                    f"{address} is inside a pool; the outside could not answer it. Give an address "
                    "of this host's (fabric.address, or one on its uplink)",
                )
            )
    return problems


def _client_asn_problem(cfg: NodeConfig, where: Path, peer: PeerRange | PeerRegistry) -> list[FieldProblem]:
    """Clients of a range or of the registry are iBGP: our AS or none written."""
    if peer.asn is None or peer.asn == cfg.asn:
        return []
    return [FieldProblem((*where, "asn"), f"clients are iBGP and must have our AS {cfg.asn}, not {peer.asn}")]


def _range_problems(cfg: NodeConfig, index: int, peer: PeerRange) -> list[FieldProblem]:
    where: Path = ("peers", index)
    found: list[FieldProblem] = []
    version = peer.range.version
    if cfg.role is not Role.REFLECTOR:
        found.append(
            FieldProblem(
                (*where, "range"), "a range of clients is for role: reflector; a node lists its reflectors"
            )
        )
    if cfg.fabric.address_for(version) is None:
        found.append(
            FieldProblem(
                (*where, "range"),
                f"range {peer.range} is IPv{version} but the fabric has no IPv{version} address to "
                "accept its clients on (fabric.address, fabric.address6)",
            )
        )
    found += _client_asn_problem(cfg, where, peer)
    for other_index, other in enumerate(cfg.peers[:index]):
        if (
            isinstance(other, PeerRange)
            and other.range.version == version
            and other.range.overlaps(peer.range)
        ):
            found.append(
                FieldProblem(
                    (*where, "range"),
                    f"range {peer.range} overlaps peers[{other_index}] range {other.range}: a client "
                    "connecting from both could not be told which settings are its; make them disjoint",
                )
            )
    return found


def _registry_problems(cfg: NodeConfig, index: int, peer: PeerRegistry) -> list[FieldProblem]:
    where: Path = ("peers", index)
    found: list[FieldProblem] = []
    if cfg.role is not Role.REFLECTOR:
        found.append(FieldProblem((*where, "registry"), "clients from the registry are for role: reflector"))
    if cfg.ipam.etcd is None:
        found.append(
            FieldProblem(
                (*where, "registry"),
                "the registry is in etcd: give this node ipam: {mode: etcd, etcd: {endpoints: [...]}} "
                "(the hosts' etcd) to read it",
            )
        )
    found += _client_asn_problem(cfg, where, peer)
    first = next(i for i, p in enumerate(cfg.peers) if isinstance(p, PeerRegistry))
    if first != index:
        found.append(FieldProblem((*where, "registry"), f"the registry is already peers[{first}]; keep one"))
    return found
