"""Attach and detach a workload without a daemon (`routed workload`, the CNI plugin's DEL when
routed is down): this workload's routes only, applied once, under the store lock."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from routed import api
from routed.config import NodeConfig
from routed.dataplane import sysctl
from routed.dataplane.workload import WorkloadSpec
from routed.fib.kernel import NetlinkKernel
from routed.fib.reconciler import apply_once
from routed.workloads.manager import IPAddress, WorkloadManager
from routed.workloads.store import WorkloadStore


class DaemonAppeared(Exception):
    """A daemon started meanwhile: the work is its to do."""


def daemon_guard(socket_path: str) -> Callable[[], None]:
    """Called under the store lock: if a daemon came up meanwhile, it must do the work."""

    def guard() -> None:
        try:
            api.call(socket_path, "status", timeout=5)
        except (api.DaemonNotRunning, api.ApiError, OSError):
            return
        raise DaemonAppeared

    return guard


def workloads(cfg: NodeConfig) -> list[WorkloadSpec]:
    return WorkloadManager(cfg, WorkloadStore(cfg.state_dir)).all()


async def attach(
    cfg: NodeConfig,
    workload_id: str,
    netns: str,
    ips: Sequence[IPAddress],
    ifname: str,
    guard: Callable[[], None] | None = None,
) -> WorkloadSpec:
    manager = WorkloadManager(cfg, WorkloadStore(cfg.state_dir))
    kernel = NetlinkKernel(cfg.fib.table)
    try:
        sysctl.enable_forwarding(ipv6=any(p.version == 6 for p in cfg.pool_networks))
        spec = await manager.add(workload_id, netns, list(ips), ifname, guard=guard)
        routes = spec.routes(cfg.fib.table)
        await apply_once(kernel, routes, {r.key for r in routes})
        return spec
    finally:
        await kernel.close()
        await manager.ipam.close()


async def detach(cfg: NodeConfig, workload_id: str, guard: Callable[[], None] | None = None) -> WorkloadSpec:
    """Raises routed.workloads.manager.NotFound if there is no such workload."""
    manager = WorkloadManager(cfg, WorkloadStore(cfg.state_dir))
    kernel = NetlinkKernel(cfg.fib.table)
    try:
        spec = await manager.delete(workload_id, guard=guard)
        await apply_once(kernel, [], {r.key for r in spec.routes(cfg.fib.table)})
        return spec
    finally:
        await kernel.close()
        await manager.ipam.close()
