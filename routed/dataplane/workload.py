"""Attach and detach a workload: a veth pair between the host and the workload's netns.

Host side: name derived from the workload id, fixed MAC, no address, proxy ARP
and proxy NDP. Workload side: `eth0` with the workload's /32 and /128, default
routes via link-local gateways, and permanent neighbour entries for those
gateways (so the workload never depends on the host answering ARP; see
shared/notes/dataplane.md). The host's /32 route is not written here: it is a
desired route handed to the reconciler.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Any, NamedTuple

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from routed.dataplane import sysctl
from routed.dataplane.fabric import link_mtu
from routed.fib.routes import MAIN_TABLE, Route, local_route
from routed.netns import NetnsError, async_iproute, check_workload_netns, open_workload_netns

IPAddress = IPv4Address | IPv6Address

HOST_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY_V4 = IPv4Address("169.254.1.1")
GATEWAY_V6 = IPv6Address("fe80::1")
NTF_PROXY = 0x08
NUD_PERMANENT = 0x80
LOOPBACK_INDEX = 1  # lo is the first device of every network namespace


class WorkloadError(Exception):
    """A workload could not be attached or detached; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    id: str
    netns: str  # a name under /run/netns or a path such as /proc/PID/ns/net
    ips: tuple[IPAddress, ...]
    ifname: str = "eth0"
    # "" : routed moves the container side into `netns` and configures it.
    # "docker": Docker does (routed's network plugin); routed makes the pair and leaves the
    # container side, named `peer_ifname`, in the host namespace for Docker to move.
    runtime: str = ""
    # the CNI network that attached it (the conflist's name): a CNI GC of one network
    # touches only that network's workloads; "" for workloads of the CLI, API or config
    network: str = ""

    @property
    def handed_off(self) -> bool:
        return self.runtime != ""

    @property
    def peer_ifname(self) -> str:
        return _peer_ifname(self.id)

    @property
    def host_ifname(self) -> str:
        return host_ifname(self.id)

    def routes(self, table: int = MAIN_TABLE) -> list[Route]:
        return [local_route(_host_prefix(ip), self.host_ifname, table) for ip in self.ips]


def host_ifname(workload_id: str) -> str:
    """`rt` + 11 hex digits of the id's hash: 13 chars, stable across restarts."""
    return "rt" + hashlib.sha256(workload_id.encode()).hexdigest()[:11]


def _peer_ifname(workload_id: str) -> str:
    return "rp" + hashlib.sha256(workload_id.encode()).hexdigest()[:11]


def _host_prefix(ip: IPAddress) -> IPv4Network | IPv6Network:
    return ip_network(f"{ip}/{ip.max_prefixlen}")


def family_of(ip: IPAddress) -> int:
    return socket.AF_INET if ip.version == 4 else socket.AF_INET6


async def link_index(ipr: Any, ifname: str) -> int | None:
    found = await ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


class Attached(NamedTuple):
    """The workload's interface as attach left it (CNI results carry both; podman needs the MAC)."""

    mac: str | None  # None: the runtime's to set (a handed-off workload)
    mtu: int | None


async def attach(
    spec: WorkloadSpec, restoring: bool = False, mtu: int | None = None, mtu_of: str | None = None
) -> Attached:
    """Create (or repair) the workload's veth pair, both ends at `mtu`, or else at the MTU of the
    interface `mtu_of` (the fabric's, read now), or else the kernel's default; idempotent."""
    async with AsyncIPRoute() as host:
        if mtu is None and mtu_of is not None:
            mtu = await link_mtu(host, mtu_of)
        if spec.handed_off:
            await _attach_handed_off(host, spec, create=not restoring, mtu=mtu)
            return Attached(None, mtu)
        _check_netns(spec.id, spec.netns)
        index = await link_index(host, spec.host_ifname)
        if index is not None and not await _peer_in_netns(spec):
            # A half-made pair from an earlier failure: start over.
            await host.link("del", index=index)
            index = None
        if index is None:
            await _create_pair(host, spec, mtu)
            index = await _created_index(host, spec)
        await _configure_host_side(host, spec, index, mtu)
    return await _configure_workload_side(spec, mtu)


def _open_netns(workload: str, netns: str) -> int:
    """An fd of the workload's network namespace, or WorkloadError saying what is wrong with it."""
    try:
        return open_workload_netns(netns)
    except NetnsError as exc:
        raise WorkloadError(
            f"workload {workload}: bad network namespace {netns!r}: {exc}; create one first "
            "(ip netns add NAME) or pass the container's, like /proc/PID/ns/net"
        ) from exc


def _check_netns(workload: str, netns: str) -> None:
    os.close(_open_netns(workload, netns))


async def _configure_host_side(host: Any, spec: WorkloadSpec, index: int, mtu: int | None = None) -> None:
    host_name = spec.host_ifname
    sysctl.set_interface("ipv4", host_name, "proxy_arp", "1")
    # strict reverse-path filtering: a packet from the workload must come from an address
    # routed back to this veth (its own /32), before the link is up (routed's nftables table
    # checks the same, and IPv6, once the daemon has the workload; see routed/firewall)
    sysctl.set_interface("ipv4", host_name, "rp_filter", "1")
    if any(ip.version == 6 for ip in spec.ips):
        # Without DAD the host's link-local is usable at once, so the first
        # packets to the workload do not wait for neighbour discovery to settle.
        sysctl.set_interface("ipv6", host_name, "accept_dad", "0")
        sysctl.set_interface("ipv6", host_name, "proxy_ndp", "1")
    await host.link("set", index=index, state="up", **_mtu(mtu))
    if any(ip.version == 6 for ip in spec.ips):
        await _replace_neigh(
            host, dst=str(GATEWAY_V6), ifindex=index, family=socket.AF_INET6, flags=NTF_PROXY
        )


def _mtu(mtu: int | None) -> dict[str, int]:
    return {} if mtu is None else {"mtu": mtu}


async def _attach_handed_off(host: Any, spec: WorkloadSpec, create: bool, mtu: int | None = None) -> None:
    """The runtime's kind of workload: the pair is made once, its container side left in the
    host namespace (down, no address) for the runtime to move, rename and configure. Once
    made, a missing host side means the container's namespace took the pair with it."""
    index = await link_index(host, spec.host_ifname)
    if index is None:
        if not create:
            raise WorkloadError(
                f"workload {spec.id}: veth {spec.host_ifname} is gone (its container was removed)"
            )
        await _add_pair(host, spec, mtu)
        index = await _created_index(host, spec)
    # the container side is the runtime's once moved: its MTU is set here, at creation only
    await _configure_host_side(host, spec, index, mtu if create else None)


async def _peer_in_netns(spec: WorkloadSpec) -> bool:
    try:
        check_workload_netns(spec.netns)
        async with async_iproute(spec.netns) as ns:
            return await link_index(ns, spec.ifname) is not None
    except (OSError, NetlinkError):
        return False


async def _add_pair(host: Any, spec: WorkloadSpec, mtu: int | None = None) -> None:
    """The veth pair, both ends in the host namespace: `host_ifname` and `peer_ifname`."""
    try:
        await host.link(
            "add",
            ifname=spec.host_ifname,
            kind="veth",
            address=HOST_MAC,
            peer={"ifname": spec.peer_ifname, **_mtu(mtu)},
            **_mtu(mtu),
        )
    except NetlinkError as exc:
        raise WorkloadError(
            f"workload {spec.id}: cannot create veth {spec.host_ifname}: {os.strerror(exc.code)}"
        ) from exc


async def _created_index(host: Any, spec: WorkloadSpec) -> int:
    index = await link_index(host, spec.host_ifname)
    if index is None:
        raise WorkloadError(f"workload {spec.id}: veth {spec.host_ifname} vanished right after creation")
    return index


async def _create_pair(host: Any, spec: WorkloadSpec, mtu: int | None) -> None:
    """The pair made with its container side already in the workload's namespace, named: a veth
    moved there afterwards costs the kernel a network-namespace change (~20 ms here, an RCU
    grace period), made in place it costs ~1.5 ms (bench/cni.py)."""
    fd = _open_netns(spec.id, spec.netns)
    try:
        await host.link(
            "add",
            ifname=spec.host_ifname,
            kind="veth",
            address=HOST_MAC,
            peer={"ifname": spec.ifname, "net_ns_fd": fd, **_mtu(mtu)},
            **_mtu(mtu),
        )
    except NetlinkError as exc:
        hint = (
            f" (the namespace already has an interface named {spec.ifname}, or the host one named "
            f"{spec.host_ifname})"
            if exc.code == errno.EEXIST
            else ""
        )
        raise WorkloadError(
            f"workload {spec.id}: cannot create veth {spec.host_ifname} with {spec.ifname} in "
            f"{spec.netns}{hint}: {os.strerror(exc.code)}"
        ) from exc
    finally:
        os.close(fd)


async def _replace_neigh(ipr: Any, **kwargs: Any) -> None:
    try:
        await ipr.neigh("replace", **kwargs)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


async def _configure_workload_side(spec: WorkloadSpec, mtu: int | None = None) -> Attached:
    async with async_iproute(spec.netns) as ns:
        try:
            (link,) = await ns.link("get", ifname=spec.ifname)
        except NetlinkError as exc:
            raise WorkloadError(f"workload {spec.id}: {spec.ifname} missing in {spec.netns}") from exc
        index = link["index"]
        await ns.link("set", index=LOOPBACK_INDEX, state="up")
        have = {(a.get("address"), a["prefixlen"]) async for a in await ns.addr("dump", index=index)}
        for ip in spec.ips:
            if (str(ip), ip.max_prefixlen) not in have:
                extra = {"flags": 0x02} if ip.version == 6 else {}  # IFA_F_NODAD: the /128 is ours alone
                await ns.addr(
                    "add",
                    index=index,
                    address=str(ip),
                    prefixlen=ip.max_prefixlen,
                    family=family_of(ip),
                    **extra,
                )
        await ns.link("set", index=index, state="up", **_mtu(mtu))
        for ip in spec.ips:
            gateway = GATEWAY_V4 if ip.version == 4 else GATEWAY_V6
            await _replace_neigh(
                ns,
                dst=str(gateway),
                lladdr=HOST_MAC,
                ifindex=index,
                state=NUD_PERMANENT,
                family=family_of(ip),
            )
            default = "0.0.0.0/0" if ip.version == 4 else "::/0"
            onlink = {"flags": 4} if ip.version == 4 else {}  # RTNH_F_ONLINK
            await ns.route(
                "replace", dst=default, gateway=str(gateway), oif=index, family=family_of(ip), **onlink
            )
    mac = link.get("address")
    return Attached(str(mac) if mac else None, mtu if mtu is not None else link.get("mtu"))


async def detach(spec: WorkloadSpec) -> bool:
    """Remove the veth pair (the kernel drops its routes with it). False if it was already gone."""
    async with AsyncIPRoute() as host:
        index = await link_index(host, spec.host_ifname)
        if index is None:
            return False
        try:
            await host.link("del", index=index)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise
            return False
    return True


async def is_attached(spec: WorkloadSpec) -> bool:
    async with AsyncIPRoute() as host:
        return await link_index(host, spec.host_ifname) is not None


async def handed_off_state(spec: WorkloadSpec) -> str:
    """Where a runtime's workload is: "gone" (its pair with it), "waiting" (the container side
    still in the host namespace: not joined yet, or left behind) or "joined"."""
    async with AsyncIPRoute() as host:
        if await link_index(host, spec.host_ifname) is None:
            return "gone"
        return "waiting" if await link_index(host, spec.peer_ifname) is not None else "joined"


async def settle_handed_off(spec: WorkloadSpec, sandbox: str, timeout: float = 10.0) -> bool:
    """Once the runtime has moved the container side into `sandbox` and brought it up, give it
    the permanent neighbour entry for the IPv4 gateway (see attach: the host answers ARP for it
    only if it has a route to 169.254.1.1 itself). False if that did not happen in time."""
    if not any(ip.version == 4 for ip in spec.ips):
        return True
    deadline = asyncio.get_running_loop().time() + timeout
    async with AsyncIPRoute() as host:
        host_index = await link_index(host, spec.host_ifname)
    if host_index is None:
        return False
    while asyncio.get_running_loop().time() < deadline:
        try:
            check_workload_netns(sandbox)
            async with async_iproute(sandbox) as ns:
                async for link in await ns.link("dump"):
                    if link.get("link") == host_index and link["flags"] & 1:  # its veth peer, up
                        await _replace_neigh(
                            ns,
                            dst=str(GATEWAY_V4),
                            lladdr=HOST_MAC,
                            ifindex=link["index"],
                            state=NUD_PERMANENT,
                            family=socket.AF_INET,
                        )
                        return True
        except (OSError, NetlinkError):
            pass  # the sandbox is not there yet, or already gone (or not a namespace: never joins)
        await asyncio.sleep(0.02)
    return False
