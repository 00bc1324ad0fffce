"""`routed run`: one asyncio loop holding the reconciler, the workloads and the API.

Stopping the daemon leaves workloads and routes in place: traffic keeps flowing
while it is down, peers keep our routes through graceful restart, and the next
start adopts what it finds. `routed stop --withdraw` is the way to leave for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyroute2.netlink.exceptions import NetlinkError

from bgp.config import Reconfiguration
from bgp.speaker import Speaker
from routed import service
from routed.api import ApiError
from routed.apihandlers import NodeApi
from routed.apiserver import ApiServer
from routed.bfdsupervisor import BfdSupervisor
from routed.bgpconfig import reconfiguration, speaker_config
from routed.config import NodeConfig
from routed.config.derived import resolved_peers
from routed.config.reload import ReloadPlan
from routed.config.services import IpamMode
from routed.dataplane import sysctl
from routed.dataplane.fabric import FabricLink, FabricWatch, wait_for_fabric
from routed.dataplane.netstat import tcp_md5_drops
from routed.dataplane.workload import WorkloadError, WorkloadSpec
from routed.docker.plugin import DockerPlugin
from routed.docker.supervise import FrontSupervisor
from routed.fib.kernel import NetlinkKernel
from routed.fib.reconciler import Reconciler, RouteSource
from routed.fib.routes import Route
from routed.fib.sink import FibSink
from routed.firewall.service import Firewall
from routed.ipam.backends import IpamError, make_ipam
from routed.localroutes import LocalRoutes
from routed.log import event
from routed.metrics import MetricsServer
from routed.nodestatus import node_status
from routed.reloader import Applied, Reloader
from routed.workloads.manager import UsageError, WorkloadManager
from routed.workloads.store import WorkloadStore

if TYPE_CHECKING:
    from routed.registry import NodeRegistry

log = logging.getLogger("routed.daemon")

SOURCES = tuple(RouteSource)  # precedence: a local workload's route beats any learned one


def _listed(value: Any) -> Any:
    return ",".join(value) if isinstance(value, list) else value


class Daemon:
    def __init__(self, cfg: NodeConfig, log_format: str = "text", config_path: str | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path  # what reload reads again; None: nothing to reload
        self.kernel = NetlinkKernel(cfg.fib.table)
        self.metrics = (
            MetricsServer(cfg.metrics.listen, lambda: node_status(self)) if cfg.metrics.enabled else None
        )
        self.reconciler = Reconciler(
            self.kernel,
            sources=SOURCES,
            resync_interval=cfg.fib.resync_interval,
            on_pass=lambda: self.local_routes.announce_installed(),
            on_applied=self.metrics.reconcile_seconds.observe if self.metrics is not None else None,
        )
        self.speaker = Speaker(
            speaker_config(cfg),
            FibSink(self.reconciler, cfg.fib.table, cfg.fabric.interface),
            Path(cfg.api.socket).parent / f"bgp-{cfg.name}",
            fabric=lambda: wait_for_fabric([str(a) for a in cfg.fabric.addresses], cfg.fabric.interface),
            md5_drops=tcp_md5_drops,
            clients_file=Path(cfg.state_dir) / "bgp-clients.json",
            clients_changed=lambda clients: self.bfd.set_clients(clients),
        )
        self.ipam = make_ipam(cfg, owner_of=self.speaker.block_owner)
        self.registry: NodeRegistry | None = None
        if cfg.ipam.mode is IpamMode.ETCD:  # etcd is configured: the node registers itself
            from routed.registry import for_node

            self.registry = for_node(cfg, self._registry_changed, self.speaker.holds)
        self.workloads = WorkloadManager(
            cfg,
            WorkloadStore(cfg.state_dir),
            on_change=self._workloads_changed,
            ipam=self.ipam,
            reserved=self._docker_reserved,
        )
        self.local_routes = LocalRoutes(
            self.reconciler,
            cfg.fib.table,
            self.ipam.owned_blocks,
            lambda: self.speaker.local,
            self.speaker.set_local_prefixes,
        )
        self.bfd = BfdSupervisor(cfg, self.speaker.bfd_state, log_format)
        self.firewall = Firewall()
        self.firewall.set_pools(cfg.pools)
        self.fabric = FabricWatch(cfg.fabric.interface, self._fabric_changed)
        self._fabric_changed()  # the peers and next hops, until the kernel's subnets are read
        # until the restore is over, the workloads of the last run keep their table entries:
        # dropping those of a workload not yet re-attached would drop its packets meanwhile
        self._firewall_floor: list[WorkloadSpec] = []
        self.docker: DockerPlugin | None = None
        self.docker_front: FrontSupervisor | None = None
        if cfg.docker.enabled:
            self.docker = DockerPlugin(cfg, self.workloads, self.ipam, self.reconciler.wait_in_sync)
            self.docker_front = FrontSupervisor(cfg, log_format)
        self.api = ApiServer(cfg.api.socket, NodeApi(self).handlers())
        self.reloader = Reloader(
            config_path,
            lambda: self.cfg,
            [
                Applied(self._take_config),
                Applied(self._reconfigure_bgp),
                self.bfd,
                Applied(self._attach_declared),
            ],
            kernel=self._reread_kernel,
        )
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.started = time.time()
        self.drain_file = Path(cfg.state_dir) / "draining"

    def _docker_reserved(self) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return self.docker.reserved() if self.docker is not None else set()

    def _workloads_changed(self, routes: list[Route]) -> None:
        self.firewall.set_workloads([*self._firewall_floor, *self.workloads.current()])
        self.local_routes.set_workload_routes(routes)

    def _fabric_changed(self, link: FabricLink | None = None) -> None:
        """No NAT to the fabric: its subnets, the extra next-hop subnets, every peer."""
        subnets = (link or self.fabric.link).subnets
        peers = [p.address for p in resolved_peers(self.cfg)]
        self.firewall.set_fabric([*subnets, *self.cfg.bgp.next_hops, *self.cfg.fabric.addresses, *peers])

    def stop(self) -> None:
        self._stop.set()

    def _take_config(self, new: NodeConfig, plan: ReloadPlan) -> None:
        """Everything that reads the config reads the new one from now on."""
        self.cfg = new
        self.firewall.set_pools(new.pools)
        self._fabric_changed()
        for holder in (self.workloads, self.ipam, self.docker, self.registry):
            if holder is not None:
                holder.cfg = new
        self.reconciler.resync_interval = new.fib.resync_interval

    async def _reconfigure_bgp(self, new: NodeConfig, plan: ReloadPlan) -> None:
        registered = self.registry.clients if self.registry is not None else ()
        await self.speaker.reconfigure(speaker_config(new, registered), reconfiguration(plan))

    async def _registry_changed(
        self, clients: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]
    ) -> None:
        """The registry's clients joined or left: only those sessions move."""
        before = {n.address for n in self.speaker.cfg.neighbors if n.registered}
        change = Reconfiguration(added=tuple(clients - before), removed=tuple(before - clients))
        await self.speaker.reconfigure(speaker_config(self.cfg, clients), change)
        self.bfd.set_registered(sorted(clients, key=lambda a: (a.version, int(a))))

    async def _attach_declared(self, new: NodeConfig, plan: ReloadPlan) -> None:
        for declared in new.workloads:
            if declared.id in plan.workloads_added:
                try:
                    await self.workloads.add(declared.id, declared.netns, declared.ips, declared.ifname)
                except (UsageError, WorkloadError, IpamError, OSError) as exc:
                    log.error(event("workload_add_failed", workload=declared.id, reason=exc))

    async def _reread_kernel(self) -> list[str]:
        """At every reload: the fabric's MTU (and subnets) read again, workloads brought to it."""
        was = self.fabric.link.mtu
        now = (await self.fabric.refresh()).mtu
        mtu, changed = await self.workloads.apply_mtu()
        noticed = [f"fabric {self.cfg.fabric.interface} mtu {was} -> {now}"] if was != now else []
        return noticed + ([f"{changed} workload veths to mtu {mtu}"] if changed else [])

    def _reload_on_signal(self) -> None:
        async def reload() -> None:
            with contextlib.suppress(ApiError):  # already logged
                await self.reloader.reload()

        self._tasks.add(task := asyncio.create_task(reload(), name="reload"))
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        sysctl.enable_forwarding(ipv6=any(p.version == 6 for p in self.cfg.pool_networks))
        if self.drain_file.exists():
            self.speaker.set_draining(True)  # drained before a restart: stays drained until undone
        # The API opens under the store lock: a CLI acting without a daemon either
        # finished before we read the store, or finds our socket and uses it.
        with self.workloads.store.locked():
            await self.api.start()
            stored = self.workloads.take_over()
        with contextlib.suppress(OSError):
            await self.fabric.refresh()  # the NAT exclusions know the fabric before the table is made
        # before any workload is touched: the table (left by the last run, or none) made anew
        # in one transaction with every stored workload in it, so no packet finds it half made
        self._firewall_floor = list(stored.values())
        self.firewall.set_workloads(self._firewall_floor)
        if self.metrics is not None:
            await self.metrics.start()
        fib = asyncio.create_task(self.reconciler.run(), name="fib")
        bgp: asyncio.Task[None] | None = None
        try:
            failed = await self.workloads.restore(stored)
            self._firewall_floor = []
            self.firewall.set_workloads(self.workloads.current())
            self.reconciler.mark_ready(RouteSource.LOCAL)
            # BGP marks itself ready after End-of-RIB from every peer; until then
            # learned routes left by a previous run stay in the kernel (graceful restart).
            bgp = asyncio.create_task(self.speaker.run(), name="bgp")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reconciler.wait_in_sync(), 10)
            # our table is whole: workloads restored, in the kernel, then announced; only
            # now may our End-of-RIB tell peers to sweep what we did not announce again
            self.local_routes.announce_installed()
            self.speaker.set_local_ready()
            tasks = {fib, bgp}
            if self.docker is not None and self.docker_front is not None:
                await self.docker_front.ensure()
                tasks.add(asyncio.create_task(self.docker.upkeep(), name="docker"))
                tasks.add(asyncio.create_task(self.docker_front.watch(), name="docker-front"))
            log.info(
                event(
                    "started",
                    node=self.cfg.name,
                    role=self.cfg.role.value,
                    workloads=len(self.workloads.routes()),
                    restore_failed=len(failed),
                    api=self.cfg.api.socket,
                    docker=self.cfg.docker.socket if self.docker is not None else "off",
                )
            )
            tasks.add(asyncio.create_task(self._ipam_upkeep(), name="ipam"))
            tasks.add(asyncio.create_task(self._workload_upkeep(), name="workloads"))
            tasks.add(asyncio.create_task(self._tell_systemd(), name="systemd"))
            tasks.add(asyncio.create_task(self.bfd.run(), name="bfd"))
            tasks.add(asyncio.create_task(self.firewall.run(), name="firewall"))
            tasks.add(asyncio.create_task(self.fabric.run(), name="fabric"))
            if self.registry is not None:
                tasks.add(asyncio.create_task(self.registry.run(), name="registry"))
            stop = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait({*tasks, stop}, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task in done:
                    task.result()  # the reconciler, the speaker, IPAM or Docker's upkeep died: exit 1
            for task in tasks - {fib, bgp}:
                task.cancel()
        finally:
            await self.speaker.stop()
            if bgp is not None:
                bgp.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await bgp
            fib.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fib
            await self.api.close()
            if self.metrics is not None:
                await self.metrics.close()
            await self.kernel.close()
            await self.ipam.close()
            log.info(event("stopped", node=self.cfg.name, routes_kept="yes"))

    async def _tell_systemd(self) -> None:
        """READY=1 once the FIB is synced (or the start-up wait for peers is over), then
        WATCHDOG=1 from this loop, so a stuck loop is a restart. Nothing without systemd."""
        if not service.notify(f"STATUS=restored {len(self.workloads.routes())} workload routes; syncing"):
            await asyncio.Event().wait()
        waited = self.cfg.bgp.graceful_restart.restart_time + 5
        deadline = time.monotonic() + waited
        while not self.reconciler.synced and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        why = "FIB synced" if self.reconciler.synced else f"FIB not synced after {waited}s, serving anyway"
        service.notify("READY=1", f"STATUS={why}")
        log.info(event("systemd_ready", reason=why))
        interval = service.watchdog_interval()
        while True:
            await asyncio.sleep(interval or 3600)
            if interval:
                service.notify("WATCHDOG=1")

    async def _workload_upkeep(self, interval: float = 5.0) -> None:
        """Containers that went without a CNI DEL give their addresses back (manager.forget_vanished)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.workloads.forget_vanished()
            except (OSError, WorkloadError, NetlinkError, IpamError) as exc:
                log.warning(event("workload_upkeep_failed", reason=exc))

    async def _ipam_upkeep(self) -> None:
        """Align with the IPAM datastore (in the background: restore and start-up use the cached
        blocks), then keep it tidy: blocks released when empty long enough, orphans freed."""
        await self.ipam.start()
        self._workloads_changed(self.workloads.routes())
        if self.cfg.ipam.mode is not IpamMode.ETCD:
            await asyncio.Event().wait()  # nothing to keep up
            return
        interval = max(1.0, min(30.0, self.cfg.ipam.release_after / 4))
        while True:
            await asyncio.sleep(interval)
            in_use = self.workloads.addresses_in_use()
            if await self.ipam.maintain(in_use):
                self._workloads_changed(self.workloads.routes())
