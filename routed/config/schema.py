"""The node configuration schema: every field, its default, and the rules between fields.

The fields live by subject: scalar types (routed.config.types), BGP and peers
(routed.config.peering), the node's services (routed.config.services); the node itself here.
Field docs are the source of config/README.md; keep them in step."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
)

from routed.config.peering import (
    Bgp,
    Fabric,
    Peer,
    PeerEntry,
    PeerRange,
    PeerRegistry,
)
from routed.config.pools import PoolEntry
from routed.config.services import (
    Api,
    Docker,
    Fib,
    Ipam,
    Metrics,
    Workload,
    _docker_shorthand,
    _ipam_shorthand,
)
from routed.config.types import (
    NODE_NAME,
    Address,
    Asn,
    IPNetwork,
    Role,
    RouterId,
    Strict,
    _check_asn,
    _mesh_mode,
)


class NodeConfig(Strict):
    name: str
    router_id: RouterId
    asn: Asn
    role: Role = Role.NODE
    fabric: Fabric
    pools: tuple[PoolEntry, ...] = Field(min_length=1)
    # the MTU of workload veths; None: the fabric interface's (there is no encapsulation)
    mtu: Annotated[int, Field(ge=1280, le=65535)] | None = None
    ipam: Annotated[Ipam, BeforeValidator(_ipam_shorthand)] = Ipam()
    mesh: Annotated[Literal["full", "off"], BeforeValidator(_mesh_mode)] = "off"
    mesh_nodes: tuple[Address, ...] = ()
    cluster_id: RouterId | None = None
    peers: tuple[PeerEntry, ...] = ()  # by address, a range of clients, or the registry's
    bgp: Bgp = Bgp()
    api: Api = Api()
    metrics: Metrics = Metrics()
    docker: Annotated[Docker, BeforeValidator(_docker_shorthand)] = Docker()
    fib: Fib = Fib()
    state_dir: str = "/var/lib/routed"
    workloads: tuple[Workload, ...] = ()

    _asn = field_validator("asn")(lambda cls, v: _check_asn(v))

    @property
    def listed_peers(self) -> tuple[Peer, ...]:
        """The peers listed by address (resolved_peers adds the mesh's)."""
        return tuple(p for p in self.peers if isinstance(p, Peer))

    @property
    def peer_ranges(self) -> tuple[PeerRange, ...]:
        return tuple(p for p in self.peers if isinstance(p, PeerRange))

    @property
    def peer_registry(self) -> PeerRegistry | None:
        """The `registry: etcd` entry, if any (at most one: routed.config.checks)."""
        return next((p for p in self.peers if isinstance(p, PeerRegistry)), None)

    @property
    def pool_networks(self) -> tuple[IPNetwork, ...]:
        """The pools' CIDRs, which is what most of routed needs of them."""
        return tuple(p.cidr for p in self.pools)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NODE_NAME.match(value):
            raise ValueError(f"{value!r} is not a node name; use 1-63 of A-Z a-z 0-9 . _ -")
        return value

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: str) -> str:
        if not PurePosixPath(value).is_absolute():
            raise ValueError(f"{value!r} must be an absolute path, e.g. /var/lib/routed")
        return value
