"""The daemon's API (routed.apiserver): each operation of the socket, on the node's services.

Each handler checks what came over the socket (hostile until validated) and answers with the
same JSON the CLI prints; refusals are ApiError with the exit code the CLI returns.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from routed.api import ApiError
from routed.cni import plugin as cni_plugin
from routed.dataplane.inspect import problems as dataplane_problems
from routed.dataplane.inspect import sandbox_interface
from routed.dataplane.workload import WorkloadError
from routed.docker.plugin import DockerPlugin
from routed.docker.protocol import UNKNOWN_CALL, PluginError
from routed.docker.supervise import FrontSupervisor
from routed.fib.reconciler import RouteSource
from routed.ipam.backends import IpamError
from routed.log import event
from routed.nodestatus import Node as StatusNode
from routed.nodestatus import node_status
from routed.reloader import Reloader
from routed.views import route_json, workload_json
from routed.workloads.manager import NotFound, Stages, UsageError


class Leaving(Protocol):
    """The node registry (routed.registry), as a decommission sees it."""

    async def leave(self) -> None: ...


class Node(StatusNode, Protocol):
    """The services the API acts on (routed.daemon.Daemon)."""

    docker: DockerPlugin | None
    docker_front: FrontSupervisor | None
    reloader: Reloader
    drain_file: Path

    @property
    def registry(self) -> Leaving | None: ...

    def stop(self) -> None: ...


log = logging.getLogger("routed.daemon")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class NodeApi:
    def __init__(self, node: Node) -> None:
        self.node = node

    def handlers(self) -> dict[str, Handler]:
        return {
            "workload.add": self.add,
            "workload.del": self.delete,
            "workload.list": self.list,
            "workload.check": self.check,
            "routes": self.routes,
            "status": self.status,
            "stop": self.stop,
            "drain": self.drain,
            "reload": self.reload,
            "docker": self.docker,
            "cni": self.cni,
        }

    async def cni(self, request: dict[str, Any]) -> Any:
        """A CNI invocation relayed by the plugin (routed.cni.relay): done here, where everything
        is loaded, answered as the plugin's output and exit code."""
        env, stdin = request.get("env"), request.get("stdin")
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ApiError("cni: env must map CNI_* names to strings", 2)
        if not isinstance(stdin, str):
            raise ApiError("cni: stdin must be the network configuration's text", 2)

        async def here(_socket: str, op: str, timeout: float = 0.0, **fields: Any) -> Any:
            return await self.handlers()[op]({"op": op, **fields})

        output, code = await cni_plugin.run_async(
            {str(k): v for k, v in env.items() if str(k).startswith("CNI_")}, stdin.encode(), here
        )
        return {"output": json.dumps(output) if output is not None else "", "code": code}

    async def add(self, request: dict[str, Any]) -> Any:
        try:
            ips = [ipaddress.ip_address(ip) for ip in request.get("ips") or []]
        except ValueError as exc:
            raise ApiError(f"{exc}; give an IPv4 or IPv6 address", 2) from exc
        try:
            spec = await self.node.workloads.add(
                str(request["id"]),
                str(request["netns"]),
                ips,
                str(request.get("ifname") or "eth0"),
                network=str(request.get("network") or ""),
                stages=(stages := Stages()),
            )
        except UsageError as exc:
            raise ApiError(str(exc), 2) from exc
        except (WorkloadError, IpamError, OSError) as exc:
            raise ApiError(str(exc), 1) from exc
        await self.node.reconciler.wait_in_sync()
        stages.mark("fib")
        attached = self.node.workloads.attached.get(spec.id)
        mac, mtu = attached if attached is not None else await sandbox_interface(spec)
        self._log_stages("workload_add_stages", spec.id, stages)
        return {**workload_json(spec), "mac": mac, "mtu": mtu}

    async def delete(self, request: dict[str, Any]) -> Any:
        try:
            spec = await self.node.workloads.delete(str(request["id"]), stages=(stages := Stages()))
        except NotFound as exc:
            raise ApiError(str(exc), 1) from exc
        await self.node.reconciler.wait_in_sync()
        stages.mark("fib")
        self._log_stages("workload_del_stages", spec.id, stages)
        return workload_json(spec)

    def _log_stages(self, name: str, workload: str, stages: Stages) -> None:
        """One line per add or delete: where its time went, stage by stage (bench/cni.py reads it)."""
        log.info(event(name, workload=workload, total=round(sum(stages.ms.values()), 2), **stages.ms))

    async def check(self, request: dict[str, Any]) -> Any:
        """Is the workload as we made it? Its veth, addresses and routes, in the workload and in
        our kernel (CNI CHECK)."""
        wanted = str(request["id"])
        spec = next((w for w in self.node.workloads.current() if w.id == wanted), None)
        if spec is None:
            raise ApiError(f"no workload {wanted!r} on this node; `routed workload list` shows them", 1)
        found = await dataplane_problems(spec)
        for route in spec.routes(self.node.cfg.fib.table):
            if not self.node.reconciler.is_installed(route):
                found.append(f"route {route} is not in the kernel")
        return {**workload_json(spec), "problems": found}

    async def list(self, request: dict[str, Any]) -> Any:
        return [workload_json(w) for w in self.node.workloads.current()]

    async def routes(self, request: dict[str, Any]) -> Any:
        routes = []
        for route in self.node.reconciler.installed().values():
            item = route_json(route)
            details = self.node.speaker.route_details(route.dst)
            if route.is_link_scope or route.unreachable:
                item["source"] = RouteSource.LOCAL.value
            elif details is not None:
                item.update(details)
            routes.append(item)
        return routes

    async def status(self, request: dict[str, Any]) -> Any:
        return node_status(self.node)

    async def stop(self, request: dict[str, Any]) -> Any:
        """Stop the daemon. With `withdraw`, peers drop our routes at once (decommissioning);
        without, they keep them for our restart time, as after SIGTERM."""
        withdrawn = 0
        if request.get("withdraw"):
            log.warning(event("stopping", withdraw="yes"))
            if self.node.registry is not None:
                # first: once ExaBGP is stopped the daemon is on its way out; reflectors forget
                # this node when its session closes, not when its lease runs out
                await self.node.registry.leave()
            withdrawn = await self.node.speaker.withdraw_and_stop()
            if self.node.docker_front is not None:
                self.node.docker_front.stop()
            await self.node.bfd.stop()
            self.node.firewall.remove()
        asyncio.get_running_loop().call_later(0.1, self.node.stop)  # after this answer has gone out
        return {"withdrawn": withdrawn}

    async def docker(self, request: dict[str, Any]) -> Any:
        """One call of Docker's plugin protocol, relayed by the front (routed.docker.front)."""
        plugin = self.node.docker
        handler = plugin.handlers.get(str(request.get("call"))) if plugin is not None else None
        if handler is None:
            return {UNKNOWN_CALL: True}
        started = time.monotonic()
        try:
            answer = await handler(dict(request.get("body") or {}))
        except PluginError as exc:
            log.warning(event("docker_call_refused", call=request.get("call"), reason=exc))
            return {"Err": str(exc)}
        ms = round((time.monotonic() - started) * 1000, 1)
        log.info(event("docker_call", call=request.get("call"), ms=ms))
        return answer

    async def reload(self, request: dict[str, Any]) -> Any:
        return await self.node.reloader.reload()

    async def drain(self, request: dict[str, Any]) -> Any:
        """RFC 8326: peers move traffic off this host's routes before it goes; persists across restarts."""
        on = bool(request.get("on", True))
        marker: Path = self.node.drain_file
        if on:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        else:
            marker.unlink(missing_ok=True)
        self.node.speaker.set_draining(on)
        return {"draining": on, "routes": len(self.node.speaker.local)}
