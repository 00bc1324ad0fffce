"""The node's fabric addresses, waited for: ExaBGP cannot listen on an address the host does not
have yet (a node still booting), nor on an IPv6 address still in duplicate address detection.
Their interface's subnets are where iBGP next hops may be."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from routed.log import event
from routed.netns import async_iproute

log = logging.getLogger("bgp.speaker")  # (the speaker waits on it: its log, as before)

WAIT_INTERVAL = 0.2
IFA_F_TENTATIVE = 0x40  # IPv6 duplicate address detection not over: nothing can bind it yet


def subnets_of(addresses: list[Any]) -> tuple[IPv4Network | IPv6Network, ...]:
    """The subnets of an interface's global addresses, from pyroute2's address dump."""
    return tuple(
        ip_network(f"{a.get('address')}/{a['prefixlen']}", strict=False)
        for a in addresses
        if a.get("address") and not ip_address(a.get("address")).is_link_local
    )


def _flags(address: Any) -> int:
    return int(address.get("flags") or 0)  # ifa_flags: IFA_F_TENTATIVE fits its eight bits


async def wait_for_fabric(addresses: list[str], interface: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """Once each of `addresses` is on an interface of this host, and usable (an IPv6 one past its
    duplicate address detection): the subnets of their interfaces."""
    logged = False
    wanted = {ip_address(a) for a in addresses}
    async with async_iproute() as ipr:
        while True:
            dumped = [a async for a in await ipr.addr("dump")]
            usable = {
                ip_address(a.get("address")): a["index"]
                for a in dumped
                if a.get("address") and not _flags(a) & IFA_F_TENTATIVE
            }
            if wanted <= usable.keys():
                indexes = {usable[a] for a in wanted}
                return subnets_of([a for a in dumped if a["index"] in indexes])
            if not logged:
                missing = ",".join(sorted(str(a) for a in wanted - usable.keys()))
                log.warning(event("bgp_waiting_for_fabric_address", address=missing, interface=interface))
                logged = True
            await asyncio.sleep(WAIT_INTERVAL)


@dataclass(frozen=True, slots=True)
class FabricLink:
    """The fabric interface as the kernel has it now."""

    mtu: int | None  # None: no such interface
    subnets: tuple[IPv4Network | IPv6Network, ...]


async def read_fabric_link(interface: str) -> FabricLink:
    """What the kernel has of the interface now; nothing if it is not there (or went meanwhile)."""
    try:
        async with async_iproute() as ipr:
            (link,) = await ipr.link("get", ifname=interface)
            addresses = [a async for a in await ipr.addr("dump", index=link["index"])]
    except NetlinkError:
        return FabricLink(None, ())
    mtu = link.get("mtu")
    return FabricLink(int(mtu) if mtu else None, subnets_of(addresses))


async def link_mtu(ipr: Any, ifname: str) -> int | None:
    """An interface's MTU on an open netlink socket; None if there is no such interface (yet)."""
    try:
        (link,) = await ipr.link("get", ifname=ifname)
    except NetlinkError:
        return None
    return int(link.get("mtu")) if link.get("mtu") else None


async def workload_mtu(configured: int | None, interface: str) -> int | None:
    """The MTU a new workload's veth gets: the node's `mtu:`, else the fabric interface's
    (no encapsulation takes a share of it); None if neither is known (the kernel's 1500)."""
    if configured is not None:
        return configured
    async with async_iproute() as ipr:
        return await link_mtu(ipr, interface)


class FabricWatch:
    """The fabric interface's MTU and subnets, read again every `interval` seconds: a renumbered
    or re-MTU'd fabric is noticed without a restart (outgoing NAT's exclusions follow it)."""

    def __init__(
        self, interface: str, on_change: Callable[[FabricLink], None], interval: float = 5.0
    ) -> None:
        self.interface = interface
        self.interval = interval
        self.link = FabricLink(None, ())
        self._on_change = on_change

    async def refresh(self) -> FabricLink:
        now = await read_fabric_link(self.interface)
        if now != self.link:
            if now.mtu != self.link.mtu and self.link.mtu is not None:
                log.info(
                    event("fabric_mtu_changed", interface=self.interface, was=self.link.mtu, mtu=now.mtu)
                )
            self.link = now
            self._on_change(now)
        return now

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except OSError as exc:  # netlink itself: try again next time
                log.warning(event("fabric_read_failed", interface=self.interface, reason=exc))
