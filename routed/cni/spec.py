"""The CNI protocol (spec 1.0.0, with 1.1.0's STATUS and GC, results down to 0.3.0): parsing
what a runtime hands a plugin, and the JSON it expects back. Pure: no daemon, no kernel.

https://www.cni.dev/docs/spec/ — a runtime runs the plugin with `CNI_COMMAND`,
`CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH` in the environment
and the network configuration on stdin; the plugin prints a result or an error on stdout.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::1"
HOST_MAC = "ee:ee:ee:ee:ee:ee"
WORKLOAD_PREFIX = "cni-"  # workloads made through CNI, so GC touches nothing else

# error codes of the spec; 100 and up are the plugin's own
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50  # STATUS: the plugin cannot serve ADDs now
ADDRESS_REFUSED = 100  # the requested address cannot be given (another host's block...)
ATTACH_FAILED = 101
CHECK_FAILED = 102

CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
IFNAME = re.compile(r"^[^/:\s]{1,15}$")


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def json(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True)
class Request:
    command: str
    version: str  # the configuration's cniVersion: results are written in it
    config: dict[str, Any] = field(default_factory=dict)
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)

    @property
    def workload_id(self) -> str:
        return workload_id(self.container_id, self.ifname)

    @property
    def network(self) -> str:
        """The network configuration's name (the conflist's `name`), recorded with each workload."""
        return str(self.config.get("name") or "")[:128]

    @property
    def requested_ips(self) -> list[str]:
        """Addresses asked for: `ips` in runtimeConfig (the `ips` capability), else CNI_ARGS IP=."""
        runtime = self.config.get("runtimeConfig") or {}
        ips = runtime.get("ips") or []
        if not ips and self.args.get("IP"):
            ips = self.args["IP"].split(",")
        return [str(ip).split("/")[0] for ip in ips]


def workload_id(container_id: str, ifname: str) -> str:
    """`cni-<container id>:<ifname>`, or with a hash when that would pass 128 characters."""
    plain = f"{WORKLOAD_PREFIX}{container_id}:{ifname}"
    if len(plain) <= 128:
        return plain
    digest = hashlib.sha256(f"{container_id}:{ifname}".encode()).hexdigest()[:16]
    return f"{WORKLOAD_PREFIX}{container_id[:80]}-{digest}:{ifname}"


def parse(env: Mapping[str, str], stdin: bytes) -> Request:
    """What the runtime asked, checked as far as the spec says; CniError otherwise."""
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(
            INVALID_ENVIRONMENT,
            f"CNI_COMMAND is {command!r}",
            f"must be one of {', '.join(COMMANDS)}; a runtime sets it, see https://www.cni.dev/docs/spec/",
        )
    try:
        config = json.loads(stdin) if stdin.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(DECODING_FAILURE, "the network configuration on stdin is not JSON", str(exc)) from exc
    if not isinstance(config, dict):
        raise CniError(DECODING_FAILURE, "the network configuration on stdin must be a JSON object")
    version = str(config.get("cniVersion", "1.1.0" if command == "VERSION" else ""))
    if command == "VERSION":
        return Request(command, version if version in SUPPORTED_VERSIONS else "1.1.0", config)
    if not version:
        raise CniError(
            INVALID_CONFIG, "the network configuration has no cniVersion", 'add "cniVersion": "1.0.0"'
        )
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"cniVersion {version} is not supported",
            f"routed supports {', '.join(SUPPORTED_VERSIONS)}",
        )
    for key in ("name", "type"):
        if not isinstance(config.get(key), str) or not config[key]:
            raise CniError(INVALID_CONFIG, f"the network configuration has no {key!r}")
    if command in ("STATUS", "GC"):
        return Request(command, version, config)
    container_id = env.get("CNI_CONTAINERID", "")
    ifname = env.get("CNI_IFNAME", "")
    netns = env.get("CNI_NETNS", "")
    missing = [
        name for name, value in (("CNI_CONTAINERID", container_id), ("CNI_IFNAME", ifname)) if not value
    ]
    if command in ("ADD", "CHECK") and not netns:
        missing.append("CNI_NETNS")
    if missing:
        raise CniError(INVALID_ENVIRONMENT, f"{', '.join(missing)} not set", f"{command} needs them")
    if not CONTAINER_ID.match(container_id):
        raise CniError(
            INVALID_ENVIRONMENT,
            f"CNI_CONTAINERID {container_id!r} is not a container id",
            "letters, digits, _ . - , starting with a letter or digit",
        )
    if not IFNAME.match(ifname) or ifname in (".", ".."):
        raise CniError(
            INVALID_ENVIRONMENT,
            f"CNI_IFNAME {ifname!r} is not an interface name",
            "1-15 characters, no '/', ':' or spaces",
        )
    return Request(command, version, config, container_id, netns, ifname, parse_args(env.get("CNI_ARGS", "")))


def parse_args(text: str) -> dict[str, str]:
    """CNI_ARGS: `KEY=VALUE;KEY=VALUE` (IgnoreUnknown=1 among them, by convention)."""
    out = {}
    for pair in text.split(";"):
        if "=" in pair:
            key, value = pair.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def add_result(request: Request, workload: Mapping[str, Any]) -> dict[str, Any]:
    """The ADD result: the host veth, the container's interface, its addresses via the
    link-local gateways, a default route per family, DNS passed through; merged after any
    prevResult (routed after another plugin), as the spec wants."""
    previous = request.config.get("prevResult") or {}
    interfaces = list(previous.get("interfaces") or [])
    host_index = len(interfaces)
    # both ends carry the same MTU (the fabric's, or the node's mtu:); CNI 1.1 names the field,
    # and parsers of earlier versions skip what they do not know
    mtu = {"mtu": workload["mtu"]} if workload.get("mtu") else {}
    container: dict[str, Any] = {"name": request.ifname, "sandbox": request.netns, **mtu}
    if workload.get("mac"):
        container = {"name": request.ifname, "mac": workload["mac"], "sandbox": request.netns, **mtu}
    interfaces += [{"name": workload["host_ifname"], "mac": HOST_MAC, **mtu}, container]
    ips = list(previous.get("ips") or [])
    routes = list(previous.get("routes") or [])
    legacy = request.version in ("0.3.0", "0.3.1", "0.4.0")
    for address in workload["ips"]:
        v6 = ":" in address
        entry: dict[str, Any] = {
            "address": f"{address}/{128 if v6 else 32}",
            "gateway": GATEWAY_V6 if v6 else GATEWAY_V4,
            "interface": host_index + 1,
        }
        if legacy:
            entry["version"] = "6" if v6 else "4"
        ips.append(entry)
        default = {"dst": "::/0" if v6 else "0.0.0.0/0", "gw": GATEWAY_V6 if v6 else GATEWAY_V4}
        if default not in routes:
            routes.append(default)
    result: dict[str, Any] = {
        "cniVersion": request.version,
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
    }
    dns = request.config.get("dns") or previous.get("dns")
    if dns:
        result["dns"] = dns
    return result


def version_result(request: Request) -> dict[str, Any]:
    return {"cniVersion": request.version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def expected_ips(request: Request) -> set[str]:
    """CHECK: the addresses the runtime's cached result says the container has."""
    previous = request.config.get("prevResult") or {}
    return {str(ip.get("address", "")).split("/")[0] for ip in previous.get("ips") or [] if ip.get("address")}


def valid_attachments(request: Request) -> set[str]:
    """GC: the workload ids of the attachments the runtime still has (`cni.dev/valid-attachments`)."""
    attachments = request.config.get("cni.dev/valid-attachments") or []
    return {workload_id(str(a.get("containerID", "")), str(a.get("ifname", ""))) for a in attachments}
