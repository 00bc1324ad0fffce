"""Docker's network and IPAM plugin protocols (libnetwork's remote drivers), the pure part:
the requests as Docker sends them, what routed answers, and the errors a Docker user reads.

See moby's libnetwork/docs/remote.md and ipam.md. Every call is an HTTP POST of JSON; an
answer is JSON, and a failure is `{"Err": message}` (Docker prints the message after
"Error response from daemon:"), so each message says what to do.

Pools are stateless: the PoolID names the pool and the sub-pool (`routed:10.65.0.0/16` or
`routed:10.65.0.0/16,10.65.1.0/28`), so every identical RequestPool returns the same answer,
as libnetwork requires, with nothing to count or to lose on a restart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

ADDRESS_SPACE = "routed"
POOL_ID_PREFIX = "routed:"
GATEWAY_KEY = "com.docker.network.gateway"
REQUEST_TYPE = "RequestAddressType"
# RequestPool's Data: Docker takes this as the network's gateway and so asks for none. A
# routed network has no gateway address: each container routes through its own host.
NO_GATEWAY = {4: "0.0.0.0/0", 6: "::/0"}
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::1"
CONNECTED = 1  # StaticRoute.RouteType: a route on the interface itself, no next hop
INTERFACE_PREFIX = "eth"  # Docker appends an index: eth0, eth1...
WORKLOAD_PREFIX = "docker-"
UNKNOWN_CALL = "unknown_call"  # the daemon's answer to a call it does not implement: Docker wants a 404

# CreateNetwork options Docker sets by itself; anything else came from the user (-o, --internal...)
KNOWN_NETWORK_OPTIONS = {"com.docker.network.enable_ipv6"}
DOCKER_GENERIC = "com.docker.network.generic"


class PluginError(Exception):
    """Docker shows the message as the command's error."""


@dataclass(frozen=True, slots=True)
class Pool:
    """A Docker network's addresses: `network` is what Docker shows as its subnet; addresses
    come from `within` (the sub-pool, or the pool, or every routed pool of that version)."""

    id: str
    network: IPNetwork
    within: tuple[IPNetwork, ...]

    @property
    def version(self) -> int:
        return self.network.version


def activate() -> dict[str, Any]:
    return {"Implements": ["NetworkDriver", "IpamDriver"]}


def address_spaces() -> dict[str, Any]:
    return {"LocalDefaultAddressSpace": ADDRESS_SPACE, "GlobalDefaultAddressSpace": ADDRESS_SPACE}


def _pool_text(pools: Sequence[IPNetwork]) -> str:
    return ", ".join(map(str, pools)) or "none"


def _parse_network(text: str, what: str) -> IPNetwork:
    try:
        return ip_network(text, strict=True)
    except ValueError as exc:
        raise PluginError(f"{what} {text!r} is not a subnet in CIDR form ({exc})") from exc


def request_pool(pools: Sequence[IPNetwork], request: Mapping[str, Any]) -> Pool:
    """RequestPool: `--subnet` must lie inside one of routed's pools (`--ip-range` inside the
    subnet); without `--subnet`, the network takes every routed pool of its IP version (and
    Docker shows its subnet as 0.0.0.0/0 or ::/0)."""
    pool_text = str(request.get("Pool") or "")
    sub_text = str(request.get("SubPool") or "")
    if request.get("Options"):
        raise PluginError(
            f"routed IPAM takes no --ipam-opt (got {', '.join(sorted(request['Options']))}); drop them"
        )
    if not pool_text:
        if sub_text:
            raise PluginError("--ip-range needs --subnet: give the subnet it lies in")
        version = 6 if request.get("V6") else 4
        mine = tuple(p for p in pools if p.version == version)
        if not mine:
            raise PluginError(
                f"routed has no IPv{version} pool (pools: {_pool_text(pools)}); add one to pools: in the "
                f"routed config, or create the network without --ipv6"
            )
        # 0.0.0.0/0, not the pool: libnetwork checks a pool it did not ask for against the
        # host's routes and asks again while they overlap, forever; routed's own routes lie
        # in the pool. 0.0.0.0/0 is exempt (what Calico's plugin answered too).
        return Pool(pool_id(f"v{version}"), ip_network(NO_GATEWAY[version]), mine)
    subnet = _parse_network(pool_text, "--subnet")
    if not any(p.version == subnet.version and subnet.subnet_of(p) for p in pools):  # type: ignore[arg-type]
        raise PluginError(
            f"subnet {subnet} is outside routed's pools ({_pool_text(pools)}); use a --subnet inside one "
            "of them, or add the subnet to pools: in the routed config and restart routed"
        )
    if not sub_text:
        return Pool(pool_id(str(subnet)), subnet, (subnet,))
    sub = _parse_network(sub_text, "--ip-range")
    if sub.version != subnet.version or not sub.subnet_of(subnet):  # type: ignore[arg-type]
        raise PluginError(f"--ip-range {sub} is not inside --subnet {subnet}")
    return Pool(pool_id(f"{subnet},{sub}"), subnet, (sub,))


def pool_id(text: str) -> str:
    return POOL_ID_PREFIX + text


def pool_from_id(pools: Sequence[IPNetwork], pool_id_text: str) -> Pool:
    """The Pool a PoolID stands for (it is self-describing; see the module doc)."""
    if not pool_id_text.startswith(POOL_ID_PREFIX):
        raise PluginError(
            f"pool {pool_id_text!r} is not routed's; was the network made with --ipam-driver routed?"
        )
    body = pool_id_text.removeprefix(POOL_ID_PREFIX)
    if body in ("v4", "v6"):
        version = int(body[1])
        mine = tuple(p for p in pools if p.version == version)
        if not mine:
            raise PluginError(f"routed has no IPv{version} pool any more; add one to pools: in the config")
        return Pool(pool_id_text, ip_network(NO_GATEWAY[version]), mine)
    subnet_text, _, sub_text = body.partition(",")
    subnet = _parse_network(subnet_text, "pool")
    sub = _parse_network(sub_text, "ip-range") if sub_text else subnet
    if not any(p.version == subnet.version and subnet.subnet_of(p) for p in pools):  # type: ignore[arg-type]
        raise PluginError(
            f"the network's subnet {subnet} is no longer inside routed's pools ({_pool_text(pools)}); "
            "put its pool back in the routed config"
        )
    return Pool(pool_id_text, subnet, (sub,))


def pool_response(pool: Pool) -> dict[str, Any]:
    return {"PoolID": pool.id, "Pool": str(pool.network), "Data": {GATEWAY_KEY: NO_GATEWAY[pool.version]}}


def requested_address(pool: Pool, request: Mapping[str, Any]) -> IPAddress | None:
    """RequestAddress: the address asked for (`docker run --ip`), or None for any; a gateway
    request is refused (a routed network has none)."""
    options = request.get("Options") or {}
    if options.get(REQUEST_TYPE) == GATEWAY_KEY:
        raise PluginError(
            "a routed network has no gateway address (containers route through their host, via "
            f"{GATEWAY_V4}); create the network without --gateway"
        )
    text = str(request.get("Address") or "")
    if not text:
        return None
    try:
        ip = ip_address(text)
    except ValueError as exc:
        raise PluginError(f"{text!r} is not an IP address") from exc
    if not any(ip.version == net.version and ip in net for net in pool.within):
        raise PluginError(
            f"{ip} is outside the network's addresses ({_pool_text(pool.within)}); pick one inside"
        )
    return ip


def address_response(ip: IPAddress) -> dict[str, Any]:
    return {"Address": f"{ip}/{ip.max_prefixlen}", "Data": {}}


def check_network(request: Mapping[str, Any]) -> None:
    """CreateNetwork: the network must use routed's IPAM, and take no option routed ignores."""
    for data in [*(request.get("IPv4Data") or []), *(request.get("IPv6Data") or [])]:
        gateway = str(data.get("Gateway") or "")
        if gateway not in NO_GATEWAY.values():
            raise PluginError(
                "the routed network driver needs routed's addresses: add --ipam-driver routed "
                "(and no --gateway)"
            )
    options = dict(request.get("Options") or {})
    generic = options.pop(DOCKER_GENERIC, None) or {}
    unknown = sorted(k for k, v in options.items() if k not in KNOWN_NETWORK_OPTIONS and v)
    unknown += sorted(f"-o {k}" for k in generic)
    if unknown:
        raise PluginError(
            f"the routed network driver takes no {', '.join(unknown)}; create the network without "
            "(routed networks are routed to the fabric, and have no driver options)"
        )


def workload_id(endpoint_id: str) -> str:
    return WORKLOAD_PREFIX + endpoint_id[:12]


def parse_address(text: str, what: str) -> IPAddress:
    """An address as Docker writes it: bare (ReleaseAddress) or with its prefix length."""
    try:
        return ip_address(text.split("/", 1)[0])
    except ValueError as exc:
        raise PluginError(f"{what} {text!r} is not an address") from exc


def endpoint_addresses(request: Mapping[str, Any]) -> tuple[IPAddress, ...]:
    """CreateEndpoint: the addresses routed's IPAM gave (Docker sends them as CIDRs)."""
    interface = request.get("Interface") or {}
    out: list[IPAddress] = []
    for key in ("Address", "AddressIPv6"):
        text = str(interface.get(key) or "")
        if text:
            out.append(parse_address(text, f"endpoint {key}"))
    if not out:
        raise PluginError("the endpoint has no address: the network must use --ipam-driver routed")
    return tuple(out)


def join_response(peer_ifname: str, ips: Sequence[IPAddress]) -> dict[str, Any]:
    """Join: Docker moves `peer_ifname` into the container as ethN, gives it the /32 (/128) and
    routes it by default through the link-local gateway, made reachable as a connected route."""
    response: dict[str, Any] = {
        "InterfaceName": {"SrcName": peer_ifname, "DstPrefix": INTERFACE_PREFIX},
        "StaticRoutes": [],
    }
    if any(ip.version == 4 for ip in ips):
        response["Gateway"] = GATEWAY_V4
        response["StaticRoutes"].append({"Destination": f"{GATEWAY_V4}/32", "RouteType": CONNECTED})
    if any(ip.version == 6 for ip in ips):
        response["GatewayIPv6"] = GATEWAY_V6
        response["StaticRoutes"].append({"Destination": f"{GATEWAY_V6}/128", "RouteType": CONNECTED})
    return response


def capabilities() -> dict[str, Any]:
    # local: each host's routed answers for its own containers; the fabric is BGP's business
    return {"Scope": "local"}


def ipam_capabilities() -> dict[str, Any]:
    # No replay after a dockerd restart: routed keeps its reservations on disk.
    return {"RequiresMACAddress": False, "RequiresRequestReplay": False}
