"""`docker run -p` on a routed network: the CNI portmap plugin does the NAT.

Docker publishes ports itself only on its bridge networks; for a remote driver it hands the
mappings to the driver (ProgramExternalConnectivity). routed runs the same portmap plugin
podman and Kubernetes use (containernetworking-plugins), with the container's addresses as
the previous result, rather than writing iptables rules of its own; RevokeExternalConnectivity
runs its DEL, which removes exactly that container's rules.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from routed.docker.protocol import IPAddress, PluginError

PORTMAP_KEY = "com.docker.network.portmap"
PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp"}
CNI_VERSION = "1.0.0"
NETWORK_NAME = "routed-docker"


MAX_MAPPINGS = 65535  # one a host port: more than that is a mistake or an attack


def _port(binding: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = binding.get(key) or default
    try:
        port = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PluginError(f"port binding {key}={value!r} is not a port number (1-65535)") from None
    if not 1 <= port <= 65535:
        raise PluginError(f"port binding {key}={port} is not a port number (1-65535)")
    return port


def mappings(options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Docker's port bindings as CNI portMappings (a range of host ports is one entry each).
    Every port 1-65535, a range's end not before its start and its container ports in range
    too, and no more than MAX_MAPPINGS in all: anything else is refused before it is built."""
    out: list[dict[str, Any]] = []
    for binding in options.get(PORTMAP_KEY) or []:
        if not isinstance(binding, Mapping):
            raise PluginError(f"port binding {binding!r} is not an object")
        try:
            protocol = PROTOCOLS.get(int(binding.get("Proto", 6)))
        except (TypeError, ValueError):
            protocol = None
        if protocol is None:
            raise PluginError(f"cannot publish protocol number {binding.get('Proto')}; use tcp, udp or sctp")
        if not binding.get("HostPort"):
            port = binding.get("Port")
            raise PluginError(
                f"publish port {port} with an explicit host port (-p HOSTPORT:{port}): "
                "a routed network cannot pick a free host port"
            )
        host_port = _port(binding, "HostPort")
        end = _port(binding, "HostPortEnd", host_port)
        container_port = _port(binding, "Port")
        count = end - host_port + 1
        if count < 1 or container_port + count - 1 > 65535:
            raise PluginError(
                f"port range {host_port}-{end} -> {container_port} is not a range of ports 1-65535; "
                "write -p START-END:START-END with the end not before the start"
            )
        if len(out) + count > MAX_MAPPINGS:
            raise PluginError(f"more than {MAX_MAPPINGS} published ports; publish fewer")
        for offset in range(count):
            entry = {
                "hostPort": host_port + offset,
                "containerPort": container_port + offset,
                "protocol": protocol,
            }
            if binding.get("HostIP"):
                entry["hostIP"] = str(binding["HostIP"])
            out.append(entry)
    return out


def text(ports: list[dict[str, Any]]) -> str:
    return ",".join(
        f"{p.get('hostIP', '')}:{p['hostPort']}->{p['containerPort']}/{p['protocol']}" for p in ports
    )


def find_plugin(candidates: Sequence[str]) -> Path:
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise PluginError(
        f"publishing ports (-p) on a routed network needs the CNI portmap plugin, not found at "
        f"{', '.join(candidates)}: install containernetworking-plugins, or set docker.portmap_plugin"
    )


async def run(
    plugin: Path,
    command: str,
    endpoint: str,
    sandbox: str,
    ips: Sequence[IPAddress],
    ports: list[dict[str, Any]],
) -> None:
    config: dict[str, Any] = {
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "type": "portmap",
        "capabilities": {"portMappings": True},
        "runtimeConfig": {"portMappings": ports},
        "snat": True,
        "prevResult": {
            "cniVersion": CNI_VERSION,
            "interfaces": [{"name": "eth0", "sandbox": sandbox}],
            "ips": [{"address": f"{ip}/{ip.max_prefixlen}", "interface": 0} for ip in ips],
        },
    }
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": endpoint,
        "CNI_NETNS": sandbox,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(plugin.parent),
    }
    process = await asyncio.create_subprocess_exec(
        str(plugin),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(json.dumps(config).encode()), 30)
    if process.returncode != 0:
        try:
            message = json.loads(out)["msg"]
        except (ValueError, KeyError, TypeError):
            message = (err or out).decode(errors="replace").strip()
        raise PluginError(f"port publishing failed ({plugin.name} {command}): {message}")
