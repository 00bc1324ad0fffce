"""routed as Docker's network driver and IPAM driver, inside the daemon.

Why in the daemon and not a companion process: every call needs what only the daemon holds
(the IPAM's blocks and reservations, the workloads, the reconciler that installs and
announces the /32). A companion would only relay to the API. While routed restarts, Docker's
plugin client retries a call for up to 30 s, and the socket file stays in place, so a
restart is a pause for Docker, not an error.

An endpoint is a routed workload of runtime "docker" (`docker-<endpoint id[:12]>`): routed
makes the veth pair at CreateEndpoint, Docker moves and configures the container side after
Join, DeleteEndpoint removes the pair (and so the /32 route and its announcement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from routed.config import NodeConfig
from routed.dataplane.inspect import sandbox_interface
from routed.dataplane.workload import (
    WorkloadError,
    WorkloadSpec,
    handed_off_state,
    settle_handed_off,
)
from routed.docker import portmap, protocol
from routed.docker.protocol import IPAddress, PluginError
from routed.docker.reservations import Reservations, new_owner
from routed.ipam.backends import Ipam, IpamError
from routed.log import event
from routed.workloads.manager import NotFound, Stages, UsageError, WorkloadManager

log = logging.getLogger("routed.docker")

RUNTIME = "docker"
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class DockerPlugin:
    def __init__(
        self,
        cfg: NodeConfig,
        workloads: WorkloadManager,
        ipam: Ipam,
        in_sync: Callable[[], Awaitable[None]],
    ) -> None:
        self.cfg = cfg
        self.workloads = workloads
        self.ipam = ipam
        self._in_sync = in_sync
        self.reservations = Reservations.load(Path(cfg.state_dir) / "docker.json")
        self._sandboxes: dict[str, str] = {}  # endpoint id -> SandboxKey, from Join
        self._waiting_since: dict[str, float] = {}  # workload id -> first seen not joined
        self._settling: set[asyncio.Task[bool]] = set()
        self.handlers: dict[str, Handler] = {
            "Plugin.Activate": self._static(protocol.activate()),
            "NetworkDriver.GetCapabilities": self._static(protocol.capabilities()),
            "NetworkDriver.CreateNetwork": self.create_network,
            "NetworkDriver.DeleteNetwork": self._static({}),
            "NetworkDriver.CreateEndpoint": self.create_endpoint,
            "NetworkDriver.EndpointOperInfo": self.endpoint_info,
            "NetworkDriver.DeleteEndpoint": self.delete_endpoint,
            "NetworkDriver.Join": self.join,
            "NetworkDriver.Leave": self._static({}),
            "NetworkDriver.DiscoverNew": self._static({}),
            "NetworkDriver.DiscoverDelete": self._static({}),
            "NetworkDriver.ProgramExternalConnectivity": self.program_external,
            "NetworkDriver.RevokeExternalConnectivity": self.revoke_external,
            "IpamDriver.GetCapabilities": self._static(protocol.ipam_capabilities()),
            "IpamDriver.GetDefaultAddressSpaces": self._static(protocol.address_spaces()),
            "IpamDriver.RequestPool": self.request_pool,
            "IpamDriver.ReleasePool": self._static({}),
            "IpamDriver.RequestAddress": self.request_address,
            "IpamDriver.ReleaseAddress": self.release_address,
        }

    @staticmethod
    def _static(answer: dict[str, Any]) -> Handler:
        async def handler(request: dict[str, Any]) -> dict[str, Any]:
            return answer

        return handler

    def reserved(self) -> set[IPAddress]:
        return set(self.reservations.held)

    # --- IPAM ---------------------------------------------------------------------------

    async def request_pool(self, request: dict[str, Any]) -> dict[str, Any]:
        return protocol.pool_response(protocol.request_pool(self.cfg.pool_networks, request))

    async def request_address(self, request: dict[str, Any]) -> dict[str, Any]:
        pool = protocol.pool_from_id(self.cfg.pool_networks, str(request.get("PoolID") or ""))
        wanted = protocol.requested_address(pool, request)
        owner = new_owner()
        async with self.workloads.exclusive:
            try:
                (ip,) = await self.ipam.assign(
                    owner, [wanted] if wanted else [], self.workloads.addresses_in_use(), within=pool.within
                )
            except IpamError as exc:
                raise PluginError(str(exc)) from exc
            self.reservations.add(ip, pool.id, owner)
        log.info(event("docker_address_reserved", ip=ip, pool=pool.id, owner=owner))
        return protocol.address_response(ip)

    async def release_address(self, request: dict[str, Any]) -> dict[str, Any]:
        ip = protocol.parse_address(str(request.get("Address") or ""), "ReleaseAddress")
        await self._release([ip], reason="docker")
        return {}

    async def _release(self, ips: Iterable[IPAddress], reason: str) -> None:
        async with self.workloads.exclusive:
            for ip in ips:
                held = self.reservations.pop(ip)
                if held is None:
                    continue  # released already (a repeated call, or our own sweep)
                await self.ipam.release(held.owner, [ip])
                log.info(event("docker_address_released", ip=ip, owner=held.owner, reason=reason))

    # --- networks and endpoints ------------------------------------------------------------

    async def create_network(self, request: dict[str, Any]) -> dict[str, Any]:
        protocol.check_network(request)
        aux = {
            protocol.parse_address(str(text), "--aux-address")
            for data in [*(request.get("IPv4Data") or []), *(request.get("IPv6Data") or [])]
            for text in (data.get("AuxAddresses") or {}).values()
        }
        self.reservations.mark_aux(aux)
        return {}

    def _spec(self, endpoint_id: str) -> WorkloadSpec:
        wanted = protocol.workload_id(endpoint_id)
        spec = next((w for w in self.workloads.current() if w.id == wanted), None)
        if spec is None:
            raise PluginError(
                f"routed has no endpoint {endpoint_id[:12]} (workload {wanted}); is it this host's?"
            )
        return spec

    async def create_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        endpoint_id = str(request.get("EndpointID") or "")
        ips = protocol.endpoint_addresses(request)
        foreign = [ip for ip in ips if ip not in self.reservations.held]
        if foreign:
            raise PluginError(
                f"{', '.join(map(str, foreign))} was not given by routed's IPAM; create the network "
                "with --ipam-driver routed"
            )
        try:
            stages = Stages()
            spec = await self.workloads.add(
                protocol.workload_id(endpoint_id), "", ips, runtime=RUNTIME, stages=stages
            )
        except UsageError as exc:
            raise PluginError(str(exc)) from exc
        except (WorkloadError, OSError) as exc:
            raise PluginError(f"{exc}; see routed's log on this host") from exc
        await self._in_sync()
        stages.mark("fib")
        log.info(
            event(
                "docker_endpoint_created",
                endpoint=endpoint_id[:12],
                workload=spec.id,
                veth=spec.host_ifname,
                **stages.ms,
            )
        )
        return {}

    async def endpoint_info(self, request: dict[str, Any]) -> dict[str, Any]:
        spec = self._spec(str(request.get("EndpointID") or ""))
        attached = self.workloads.attached.get(spec.id)
        mtu = attached.mtu if attached is not None else (await sandbox_interface(spec))[1]
        return {
            "Value": {
                "workload": spec.id,
                "host_veth": spec.host_ifname,
                "addresses": [str(ip) for ip in spec.ips],
                "mtu": mtu,
            }
        }

    async def delete_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        endpoint_id = str(request.get("EndpointID") or "")
        await self._unpublish(endpoint_id)  # if Docker did not revoke them first
        self._sandboxes.pop(endpoint_id, None)
        with contextlib.suppress(NotFound):  # already gone: a repeated call, or our sweep
            # no wait for the FIB pass: the kernel dropped the /32 with the veth, and the
            # speaker withdraws it at once
            spec = await self.workloads.delete(protocol.workload_id(endpoint_id), stages=(stages := Stages()))
            log.info(event("docker_endpoint_deleted", workload=spec.id, **stages.ms))
        return {}

    async def join(self, request: dict[str, Any]) -> dict[str, Any]:
        endpoint_id = str(request.get("EndpointID") or "")
        spec = self._spec(endpoint_id)
        sandbox = str(request.get("SandboxKey") or "")
        if sandbox:
            self._sandboxes[endpoint_id] = sandbox
            task = asyncio.create_task(settle_handed_off(spec, sandbox), name=f"settle-{spec.id}")
            self._settling.add(task)
            task.add_done_callback(self._settled)
        return protocol.join_response(spec.peer_ifname, spec.ips)

    def _settled(self, task: asyncio.Task[bool]) -> None:
        self._settling.discard(task)
        if not task.cancelled() and (task.exception() is not None or not task.result()):
            log.warning(
                event("docker_gateway_neighbour_missing", task=task.get_name(), error=task.exception())
            )

    async def program_external(self, request: dict[str, Any]) -> dict[str, Any]:
        ports = portmap.mappings(request.get("Options") or {})
        if not ports:
            return {}
        endpoint_id = str(request.get("EndpointID") or "")
        spec = self._spec(endpoint_id)
        plugin = portmap.find_plugin(self.cfg.docker.portmap_plugin)
        sandbox = self._sandboxes.get(endpoint_id, "")
        await portmap.run(plugin, "ADD", endpoint_id, sandbox, spec.ips, ports)
        self.reservations.publish(endpoint_id, ports)
        log.info(event("docker_ports_published", workload=spec.id, ports=portmap.text(ports)))
        return {}

    async def revoke_external(self, request: dict[str, Any]) -> dict[str, Any]:
        await self._unpublish(str(request.get("EndpointID") or ""))
        return {}

    async def _unpublish(self, endpoint_id: str) -> None:
        ports = self.reservations.published.get(endpoint_id)
        if not ports:
            return
        plugin = portmap.find_plugin(self.cfg.docker.portmap_plugin)
        await portmap.run(plugin, "DEL", endpoint_id, self._sandboxes.get(endpoint_id, ""), (), ports)
        self.reservations.unpublish(endpoint_id)
        log.info(event("docker_ports_unpublished", endpoint=endpoint_id[:12], ports=portmap.text(ports)))

    # --- upkeep -----------------------------------------------------------------------------

    async def sweep(self, now: float | None = None) -> list[str]:
        """Endpoints and addresses Docker forgot to give back (its calls failed while routed was
        down, or the container's namespace went with its veth): released after stale_after.
        Returns the workloads deleted."""
        now = time.time() if now is None else now
        grace = self.cfg.docker.stale_after
        stale: list[WorkloadSpec] = []
        stored = [w for w in await self.workloads.stored() if w.runtime == RUNTIME]
        for spec in stored:
            state = await handed_off_state(spec)
            if state == "joined":
                self._waiting_since.pop(spec.id, None)
                continue
            since = self._waiting_since.setdefault(spec.id, now)
            if state == "gone" or now - since >= grace:
                stale.append(spec)
        for spec in stale:
            self._waiting_since.pop(spec.id, None)
            for endpoint_id in [e for e in self.reservations.published if protocol.workload_id(e) == spec.id]:
                await self._unpublish(endpoint_id)
            with contextlib.suppress(NotFound):
                await self.workloads.delete(spec.id)
            await self._release(spec.ips, reason="endpoint gone")
            log.warning(event("docker_endpoint_swept", workload=spec.id, ips=",".join(map(str, spec.ips))))
        in_workloads = {ip for w in stored for ip in w.ips if w not in stale}
        orphans = [
            ip
            for ip, held in self.reservations.held.items()
            if not held.aux and ip not in in_workloads and now - held.since >= grace
        ]
        if orphans:
            await self._release(orphans, reason="no endpoint")
        if stale:
            await self._in_sync()
        return [w.id for w in stale]

    async def upkeep(self, interval: float = 10.0) -> None:
        while True:
            try:
                await self.sweep()
            except (OSError, IpamError, WorkloadError) as exc:
                log.error(event("docker_sweep_failed", reason=exc))
            await asyncio.sleep(interval)
