"""What `routed status --json` shows, as typed records: /metrics and /readyz read the same.

The node's parts are assembled here from its services; each part's shape is a TypedDict, so a
metric that reads a key the status does not have is a type error, not a KeyError at scrape time.
"""

from __future__ import annotations

from typing import Any, Protocol, TypedDict

from bgp.records import SpeakerStatus
from bgp.speaker import Speaker
from routed import __version__
from routed.bfdsupervisor import BfdSupervisor
from routed.config import NodeConfig
from routed.dataplane.fabric import FabricWatch
from routed.fib.reconciler import Reconciler
from routed.firewall.service import Firewall
from routed.ipam.backends import Ipam
from routed.localroutes import LocalRoutes
from routed.views import ipam_json
from routed.workloads.manager import WorkloadManager


class Listening(Protocol):
    listening: str


class Node(Protocol):
    """What the status is read from (routed.daemon.Daemon)."""

    cfg: NodeConfig
    started: float
    reconciler: Reconciler
    workloads: WorkloadManager
    local_routes: LocalRoutes
    ipam: Ipam
    speaker: Speaker
    bfd: BfdSupervisor
    firewall: Firewall
    fabric: FabricWatch

    @property
    def metrics(self) -> Listening | None: ...


class FibStatus(TypedDict):
    passes: int
    full_resyncs: int
    added: int
    replaced: int
    deleted: int
    failures: int
    restored: int
    routes: dict[str, int]  # our routes in the kernel by origin: workload, block, bgp, leftover
    synced: bool
    failing: dict[str, int]  # routes the kernel refuses now, by its reason


class NodeStatus(TypedDict):
    node: str
    role: str
    router_id: str
    asn: int
    version: str
    started: float
    workloads: int
    fib: FibStatus
    ipam: dict[str, Any]
    bgp: SpeakerStatus
    firewall: dict[str, Any]
    mtu: MtuStatus
    metrics: str


class MtuStatus(TypedDict):
    workloads: int | None  # what a new workload's veth gets
    source: str  # "mtu:" (the config) or "fabric IFNAME"
    fabric: int | None  # the fabric interface's, as last read


def mtu_status(node: Node) -> MtuStatus:
    fabric = node.fabric.link.mtu
    if node.cfg.mtu is not None:
        return {"workloads": node.cfg.mtu, "source": "mtu:", "fabric": fabric}
    return {"workloads": fabric, "source": f"fabric {node.cfg.fabric.interface}", "fabric": fabric}


def node_status(node: Node) -> NodeStatus:
    stats, cfg = node.reconciler.stats, node.cfg
    workloads = node.workloads.current()
    return {
        "node": cfg.name,
        "role": cfg.role.value,
        "router_id": str(cfg.router_id),
        "asn": cfg.asn,
        "version": __version__,
        "started": round(node.started, 3),
        "workloads": len(workloads),
        "fib": {
            "passes": stats.passes,
            "full_resyncs": stats.full_resyncs,
            "added": stats.added,
            "replaced": stats.replaced,
            "deleted": stats.deleted,
            "failures": stats.failures,
            "restored": stats.restored,
            "routes": node.local_routes.counts(),
            "synced": node.reconciler.synced,
            "failing": node.reconciler.failing_by_reason(),
        },
        "ipam": ipam_json(cfg, node.ipam, workloads),
        "bgp": _bgp_status(node),
        "firewall": node.firewall.status(),
        "mtu": mtu_status(node),
        "metrics": node.metrics.listening if node.metrics is not None else "off",
    }


def _bgp_status(node: Node) -> SpeakerStatus:
    bgp = node.speaker.status()
    bfd = node.bfd.status()
    for peer in bgp["peers"]:
        if peer["address"] in bfd:
            peer["bfd_refused"] = bfd[peer["address"]]["refused"]  # why a session stays down
            peer["bfd_last_refused"] = bfd[peer["address"]]["last_refused"]
    return bgp
