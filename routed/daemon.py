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
from typing import Any

from bgp.speaker import Speaker
from routed import __version__, service
from routed.api import ApiError
from routed.apiserver import ApiServer
from routed.bfdsupervisor import BfdSupervisor
from routed.bgpconfig import reconfiguration, speaker_config
from routed.config import ConfigError, NodeConfig, load_config
from routed.config.reload import ReloadPlan, plan_reload
from routed.config.services import IpamMode
from routed.dataplane import sysctl
from routed.dataplane.fabric import wait_for_fabric
from routed.dataplane.netstat import tcp_md5_drops
from routed.dataplane.workload import WorkloadError, WorkloadSpec, sandbox_mac
from routed.dataplane.workload import problems as dataplane_problems
from routed.docker.plugin import DockerPlugin
from routed.docker.protocol import UNKNOWN_CALL, PluginError
from routed.docker.supervise import FrontSupervisor
from routed.fib.kernel import NetlinkKernel
from routed.fib.reconciler import Reconciler, RouteSource
from routed.fib.routes import Route, unreachable_route
from routed.fib.sink import FibSink
from routed.firewall.service import Firewall
from routed.ipam import blocks
from routed.ipam.backends import IpamError, make_ipam
from routed.log import event
from routed.metrics import MetricsServer
from routed.views import ipam_json, route_json, workload_json
from routed.workloads.manager import NotFound, UsageError, WorkloadManager
from routed.workloads.store import WorkloadStore

log = logging.getLogger("routed.daemon")

SOURCES = tuple(RouteSource)  # precedence: a local workload's route beats any learned one


def _listed(value: Any) -> Any:
    return ",".join(value) if isinstance(value, list) else value


class Daemon:
    def __init__(self, cfg: NodeConfig, log_format: str = "text", config_path: str | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path  # what reload reads again; None: nothing to reload
        self.kernel = NetlinkKernel(cfg.fib.table)
        self.metrics = MetricsServer(cfg.metrics.listen, self.status) if cfg.metrics.enabled else None
        self.reconciler = Reconciler(
            self.kernel,
            sources=SOURCES,
            resync_interval=cfg.fib.resync_interval,
            on_pass=self._announce_installed,
            on_applied=self.metrics.reconcile_seconds.observe if self.metrics is not None else None,
        )
        self.speaker = Speaker(
            speaker_config(cfg),
            FibSink(self.reconciler, cfg.fib.table),
            Path(cfg.api.socket).parent / f"bgp-{cfg.name}",
            fabric=lambda: wait_for_fabric(str(cfg.fabric.address), cfg.fabric.interface),
            md5_drops=tcp_md5_drops,
        )
        self.ipam = make_ipam(cfg, owner_of=self.speaker.block_owner)
        self.workloads = WorkloadManager(
            cfg,
            WorkloadStore(cfg.state_dir),
            on_change=self._workloads_changed,
            ipam=self.ipam,
            reserved=self._docker_reserved,
        )
        self.bfd = BfdSupervisor(cfg, self.speaker.bfd_state, log_format)
        self.firewall = Firewall()
        self.firewall.set_pools(cfg.pools)
        # until the restore is over, the workloads of the last run keep their table entries:
        # dropping those of a workload not yet re-attached would drop its packets meanwhile
        self._firewall_floor: list[WorkloadSpec] = []
        self.docker: DockerPlugin | None = None
        self.docker_front: FrontSupervisor | None = None
        if cfg.docker.enabled:
            self.docker = DockerPlugin(cfg, self.workloads, self.ipam, self.reconciler.wait_in_sync)
            self.docker_front = FrontSupervisor(cfg, log_format)
        self.api = ApiServer(
            cfg.api.socket,
            {
                "workload.add": self._api_add,
                "workload.del": self._api_del,
                "workload.list": self._api_list,
                "workload.check": self._api_check,
                "routes": self._api_routes,
                "status": self._api_status,
                "stop": self._api_stop,
                "drain": self._api_drain,
                "reload": self._api_reload,
                "docker": self._api_docker,
            },
        )
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = time.time()
        self._local_routes: list[Route] = []
        self._drain_file = Path(cfg.state_dir) / "draining"

    def _docker_reserved(self) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return self.docker.reserved() if self.docker is not None else set()

    def _workloads_changed(self, routes: list[Route]) -> None:
        """Our local routes: each workload's /32 to its veth, and each owned block `unreachable`
        (its unused addresses answered at once instead of sent on by a shorter route)."""
        self.firewall.set_workloads([*self._firewall_floor, *self.workloads.current()])
        owned = [unreachable_route(b, self.cfg.fib.table) for b in self.ipam.owned_blocks()]
        self._local_routes = [*routes, *owned]
        self.reconciler.set_routes(RouteSource.LOCAL, self._local_routes)
        self._announce_installed()

    def _announce_installed(self) -> None:
        """Announce exactly what is in our kernel: no peer may route traffic here before we can
        deliver it (a new workload, a route refused for a conflict). A workload that goes is
        withdrawn at once. Each installed block is one announcement; a workload's /32 is
        announced only outside them. Called on every change and after every FIB pass."""
        installed = [r for r in self._local_routes if self.reconciler.is_installed(r)]
        wanted = blocks.announced(
            (r.dst for r in installed if r.unreachable),
            (r.dst for r in installed if not r.unreachable),
            owned=self.ipam.owned_blocks(),
        )
        if wanted != self.speaker.local:
            self.speaker.set_local_prefixes(wanted)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        sysctl.enable_forwarding(ipv6=any(p.version == 6 for p in self.cfg.pools))
        if self._drain_file.exists():
            self.speaker.set_draining(True)  # drained before a restart: stays drained until undone
        # The API opens under the store lock: a CLI acting without a daemon either
        # finished before we read the store, or finds our socket and uses it.
        with self.workloads.store.locked():
            await self.api.start()
            stored = self.workloads.take_over()
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
            self._announce_installed()
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
            tasks.add(asyncio.create_task(self._tell_systemd(), name="systemd"))
            tasks.add(asyncio.create_task(self.bfd.run(), name="bfd"))
            tasks.add(asyncio.create_task(self.firewall.run(), name="firewall"))
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

    async def _api_add(self, request: dict[str, Any]) -> Any:
        try:
            ips = [ipaddress.ip_address(ip) for ip in request.get("ips") or []]
        except ValueError as exc:
            raise ApiError(f"{exc}; give an IPv4 or IPv6 address", 2) from exc
        try:
            spec = await self.workloads.add(
                str(request["id"]),
                str(request["netns"]),
                ips,
                str(request.get("ifname") or "eth0"),
                network=str(request.get("network") or ""),
            )
        except UsageError as exc:
            raise ApiError(str(exc), 2) from exc
        except (WorkloadError, IpamError, OSError) as exc:
            raise ApiError(str(exc), 1) from exc
        await self.reconciler.wait_in_sync()
        return {**workload_json(spec), "mac": await sandbox_mac(spec)}

    async def _api_del(self, request: dict[str, Any]) -> Any:
        try:
            spec = await self.workloads.delete(str(request["id"]))
        except NotFound as exc:
            raise ApiError(str(exc), 1) from exc
        await self.reconciler.wait_in_sync()
        return workload_json(spec)

    async def _api_check(self, request: dict[str, Any]) -> Any:
        """Is the workload as we made it? Its veth, addresses and routes, in the workload and in
        our kernel (CNI CHECK)."""
        wanted = str(request["id"])
        spec = next((w for w in self.workloads.current() if w.id == wanted), None)
        if spec is None:
            raise ApiError(f"no workload {wanted!r} on this node; `routed workload list` shows them", 1)
        found = await dataplane_problems(spec)
        for route in spec.routes(self.cfg.fib.table):
            if not self.reconciler.is_installed(route):
                found.append(f"route {route} is not in the kernel")
        return {**workload_json(spec), "problems": found}

    async def _api_list(self, request: dict[str, Any]) -> Any:
        return [workload_json(w) for w in self.workloads.current()]

    async def _api_routes(self, request: dict[str, Any]) -> Any:
        routes = []
        for route in self.reconciler.installed().values():
            item = route_json(route)
            details = self.speaker.route_details(route.dst)
            if route.is_link_scope or route.unreachable:
                item["source"] = RouteSource.LOCAL.value
            elif details is not None:
                item.update(details)
            routes.append(item)
        return routes

    async def _api_status(self, request: dict[str, Any]) -> Any:
        return self.status()

    def status(self) -> dict[str, Any]:
        """Everything `routed status --json` shows; /metrics is made from the same dict."""
        stats = self.reconciler.stats
        workloads = self.workloads.current()
        return {
            "node": self.cfg.name,
            "role": self.cfg.role.value,
            "router_id": str(self.cfg.router_id),
            "asn": self.cfg.asn,
            "version": __version__,
            "started": round(self._started, 3),
            "workloads": len(workloads),
            "fib": {
                **{k: getattr(stats, k) for k in stats.__slots__},
                "routes": self._fib_routes(),
                "synced": self.reconciler.synced,
                "failing": self.reconciler.failing_by_reason(),
            },
            "ipam": ipam_json(self.cfg, self.ipam, workloads),
            "bgp": self._bgp_status(),
            "firewall": self.firewall.status(),
            "metrics": self.metrics.listening if self.metrics is not None else "off",
        }

    def _bgp_status(self) -> dict[str, Any]:
        bgp = self.speaker.status()
        bfd = self.bfd.status()
        for peer in bgp["peers"]:
            if peer["address"] in bfd:
                peer["bfd_refused"] = bfd[peer["address"]]["refused"]  # why a session stays down
                peer["bfd_last_refused"] = bfd[peer["address"]]["last_refused"]
        return bgp

    def _fib_routes(self) -> dict[str, int]:
        """Our kernel routes by origin: workloads, IPAM blocks (unreachable), BGP, leftovers."""
        counts = self.reconciler.installed_by_source()
        block = sum(1 for r in self._local_routes if r.unreachable and self.reconciler.is_installed(r))
        return {
            "workload": counts[RouteSource.LOCAL] - block,
            "block": block,
            "bgp": counts[RouteSource.BGP],
            "leftover": counts["leftover"],
        }

    async def _api_stop(self, request: dict[str, Any]) -> Any:
        """Stop the daemon. With `withdraw`, peers drop our routes at once (decommissioning);
        without, they keep them for our restart time, as after SIGTERM."""
        withdrawn = 0
        if request.get("withdraw"):
            log.warning(event("stopping", withdraw="yes"))
            withdrawn = await self.speaker.withdraw_and_stop()
            if self.docker_front is not None:
                self.docker_front.stop()
            await self.bfd.stop()
            self.firewall.remove()
        asyncio.get_running_loop().call_later(0.1, self._stop.set)  # after this answer has gone out
        return {"withdrawn": withdrawn}

    async def _api_docker(self, request: dict[str, Any]) -> Any:
        """One call of Docker's plugin protocol, relayed by the front (routed.docker.front)."""
        handler = self.docker.handlers.get(str(request.get("call"))) if self.docker is not None else None
        if handler is None:
            return {UNKNOWN_CALL: True}
        started = time.monotonic()
        try:
            answer = await handler(dict(request.get("body") or {}))
        except PluginError as exc:
            log.warning(event("docker_call_refused", call=request.get("call"), reason=exc))
            return {"Err": str(exc)}
        log.debug(
            event("docker_call", call=request.get("call"), ms=round((time.monotonic() - started) * 1000, 1))
        )
        return answer

    def _reload_on_signal(self) -> None:
        async def reload() -> None:
            with contextlib.suppress(ApiError):  # already logged
                await self.reload()

        self._tasks.add(task := asyncio.create_task(reload(), name="reload"))
        task.add_done_callback(self._tasks.discard)

    async def _api_reload(self, request: dict[str, Any]) -> Any:
        return await self.reload()

    async def reload(self) -> dict[str, Any]:
        """Read the config file again and apply the difference (routed.config.reload). An
        invalid file, or a change only a restart can make, leaves everything as it was."""
        async with self._reload_lock:
            new, plan = self._plan_reload()
            summary = plan.summary()
            if plan.empty:
                log.info(event("reload", file=self.config_path, changed="nothing"))
                return summary
            log.info(event("reload", file=self.config_path, **{k: _listed(v) for k, v in summary.items()}))
            self._take_config(new)
            await self.speaker.reconfigure(speaker_config(new), reconfiguration(plan))
            await self.bfd.reconfigure(new)
            for declared in new.workloads:
                if declared.id in plan.workloads_added:
                    try:
                        await self.workloads.add(declared.id, declared.netns, declared.ips, declared.ifname)
                    except (UsageError, WorkloadError, IpamError, OSError) as exc:
                        log.error(event("workload_add_failed", workload=declared.id, reason=exc))
            service.notify(f"STATUS=config reloaded: {', '.join(plan.changed)}")
            return summary

    def _plan_reload(self) -> tuple[NodeConfig, ReloadPlan]:
        """The file's config and what applying it means; ApiError (exit 2, logged) if it cannot be."""
        if self.config_path is None:
            raise ApiError("this daemon was started without a config file; nothing to reload", 2)
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error(event("reload_refused", file=self.config_path, reason="invalid", problems=str(exc)))
            raise ApiError(
                f"{exc}\nrouted: the running config is kept; fix the file and reload again", 2
            ) from exc
        plan = plan_reload(self.cfg, new)
        if plan.refused:
            log.error(event("reload_refused", file=self.config_path, needs_restart=";".join(plan.refused)))
            raise ApiError(
                f"{self.config_path}: a reload cannot change {'; '.join(plan.refused)}. Nothing was "
                "changed: restart routed to apply it (`systemctl restart routed`; peers keep our routes "
                "through graceful restart)",
                2,
            )
        return new, plan

    def _take_config(self, new: NodeConfig) -> None:
        """Everything that reads the config reads the new one from now on."""
        self.cfg = new
        self.firewall.set_pools(new.pools)
        for holder in (self.workloads, self.ipam, self.docker):
            if holder is not None:
                holder.cfg = new
        self.reconciler.resync_interval = new.fib.resync_interval

    async def _api_drain(self, request: dict[str, Any]) -> Any:
        """RFC 8326: peers move traffic off this host's routes before it goes; persists across restarts."""
        on = bool(request.get("on", True))
        if on:
            self._drain_file.parent.mkdir(parents=True, exist_ok=True)
            self._drain_file.touch()
        else:
            self._drain_file.unlink(missing_ok=True)
        self.speaker.set_draining(on)
        return {"draining": on, "routes": len(self.speaker.local)}
