"""`routed-cni`: the CNI plugin a container runtime runs. It asks the node's routed daemon
(over its API socket) to attach or detach the container, and answers in CNI's JSON.

Network configuration (one entry of a conflist; see config/cni/routed.conflist):
    {"type": "routed", "socket": "/run/routed/routed.sock", "timeout": 60,
     "routedConfig": "/etc/routed/routed.yaml", "dns": {...}}
`socket` and `timeout` (seconds toward the daemon) have those defaults; `routedConfig` is
read only for a DEL while the daemon is down, to clean up without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from routed import api
from routed.cni import spec
from routed.cni.spec import CniError, Request

DEFAULT_SOCKET = "/run/routed/routed.sock"
DEFAULT_CONFIG = "/etc/routed/routed.yaml"
DEFAULT_TIMEOUT = 60.0

Call = Callable[..., Any]  # api.call's signature: (socket, op, timeout=..., **fields)
AsyncCall = Callable[..., Awaitable[Any]]  # the same, awaited (the daemon's own handlers)


def run(env: Mapping[str, str], stdin: bytes, call: Call = api.call) -> tuple[dict[str, Any] | None, int]:
    """(what to print, exit code) for one invocation, asking the daemon over its socket."""

    async def over_socket(*args: Any, **fields: Any) -> Any:
        return call(*args, **fields)

    return asyncio.run(run_async(env, stdin, over_socket))


async def run_async(
    env: Mapping[str, str], stdin: bytes, call: AsyncCall
) -> tuple[dict[str, Any] | None, int]:
    """The same, for the daemon itself (the `cni` op the relay uses): `call` reaches its handlers."""
    version = _guess_version(stdin)
    try:
        request = spec.parse(env, stdin)
        return await Plugin(request, call).dispatch(), 0
    except CniError as exc:
        return exc.json(version), 1


def _guess_version(stdin: bytes) -> str:
    try:
        version = str(json.loads(stdin).get("cniVersion", "1.0.0"))
    except (ValueError, AttributeError, UnicodeDecodeError):
        return "1.0.0"
    return version if version in spec.SUPPORTED_VERSIONS else "1.0.0"


class Plugin:
    def __init__(self, request: Request, call: AsyncCall) -> None:
        self.request = request
        self._call = call
        self.socket = str(request.config.get("socket") or DEFAULT_SOCKET)
        try:
            self.timeout = float(request.config.get("timeout") or DEFAULT_TIMEOUT)
        except (TypeError, ValueError) as exc:
            raise CniError(
                spec.INVALID_CONFIG, f"timeout {request.config.get('timeout')!r} is not seconds"
            ) from exc

    async def dispatch(self) -> dict[str, Any] | None:
        if self.request.command == "VERSION":
            return spec.version_result(self.request)
        handler = {
            "ADD": self.add,
            "DEL": self.delete,
            "CHECK": self.check,
            "STATUS": self.status,
            "GC": self.gc,
        }[self.request.command]
        return await handler()

    async def daemon(self, op: str, **fields: Any) -> Any:
        try:
            return await self._call(self.socket, op, timeout=self.timeout, **fields)
        except api.DaemonNotRunning as exc:
            raise CniError(
                spec.TRY_AGAIN_LATER,
                f"routed is not running on this host (no answer on {self.socket})",
                "start it (systemctl start routed, or routed run -c /etc/routed/routed.yaml) and retry",
            ) from exc

    # --- commands -------------------------------------------------------------------

    async def add(self) -> dict[str, Any]:
        request = self.request
        if not os.path.exists(request.netns):
            raise CniError(
                spec.INVALID_ENVIRONMENT,
                f"CNI_NETNS {request.netns} does not exist",
                "the runtime must create the network namespace before ADD",
            )
        try:
            workload = await self.daemon(
                "workload.add",
                id=request.workload_id,
                netns=request.netns,
                ips=request.requested_ips,
                ifname=request.ifname,
                network=request.network,
            )
        except api.ApiError as exc:
            code = spec.ADDRESS_REFUSED if exc.exit_code == 2 else spec.ATTACH_FAILED
            raise CniError(code, str(exc)) from exc
        return spec.add_result(request, workload)

    async def delete(self) -> None:
        try:
            await self.daemon("workload.del", id=self.request.workload_id)
        except api.ApiError as exc:
            if "no workload" in str(exc):
                return None  # never added, or already gone: DEL succeeds
            raise CniError(spec.ATTACH_FAILED, str(exc)) from exc
        except CniError as exc:
            if exc.code != spec.TRY_AGAIN_LATER:
                raise
            await self._delete_without_daemon()
        return None

    async def _delete_without_daemon(self) -> None:
        """The daemon is down: detach here, as `routed workload del` does without one."""
        from routed.config import ConfigError, load_config
        from routed.dataplane.workload import WorkloadError
        from routed.workloads import direct
        from routed.workloads.manager import NotFound

        path = str(self.request.config.get("routedConfig") or DEFAULT_CONFIG)
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            raise CniError(
                spec.TRY_AGAIN_LATER,
                f"routed is not running and its config {path} cannot be read to clean up without it",
                str(exc),
            ) from exc
        try:
            await direct.detach(cfg, self.request.workload_id)
        except NotFound:
            return
        except (WorkloadError, OSError) as exc:
            raise CniError(spec.ATTACH_FAILED, f"detaching without the daemon failed: {exc}") from exc

    async def check(self) -> None:
        try:
            found = await self.daemon("workload.check", id=self.request.workload_id)
        except api.ApiError as exc:
            raise CniError(spec.CHECK_FAILED, str(exc)) from exc
        problems = list(found.get("problems", []))
        expected = spec.expected_ips(self.request)
        if expected and expected != set(found.get("ips", [])):
            problems.append(
                f"addresses are {sorted(found.get('ips', []))}, the runtime has {sorted(expected)}"
            )
        if problems:
            raise CniError(spec.CHECK_FAILED, f"{self.request.workload_id}: {'; '.join(problems)}")
        return None

    async def status(self) -> None:
        try:
            await self._call(self.socket, "status", timeout=self.timeout)
        except (api.DaemonNotRunning, api.ApiError, OSError) as exc:
            raise CniError(spec.NOT_AVAILABLE, f"routed does not answer on {self.socket}", str(exc)) from exc
        return None

    async def gc(self) -> None:
        """Only this network's workloads: another runtime (podman and containerd on one host) or
        another routed network lists its own attachments, not ours, and must not lose them.
        Workloads attached before networks were recorded have none and are left to their DEL."""
        keep = spec.valid_attachments(self.request)
        network = self.request.network
        try:
            for workload in await self.daemon("workload.list"):
                wid = str(workload["id"])
                ours = workload.get("network") == network and bool(network)
                if ours and wid.startswith(spec.WORKLOAD_PREFIX) and wid not in keep:
                    await self.daemon("workload.del", id=wid)
        except api.ApiError as exc:
            raise CniError(spec.ATTACH_FAILED, str(exc)) from exc
        return None


def answer(stdin: bytes) -> int:
    """One invocation done in this process, CNI's answer printed; the exit code."""
    output, code = run(os.environ, stdin)
    if output is not None:
        print(json.dumps(output))
    return code


def main() -> int:
    try:
        stdin = sys.stdin.buffer.read()
    except OSError as exc:
        print(json.dumps(CniError(spec.IO_FAILURE, "cannot read stdin", str(exc)).json("1.0.0")))
        return 1
    return answer(stdin)


if __name__ == "__main__":
    sys.exit(main())
