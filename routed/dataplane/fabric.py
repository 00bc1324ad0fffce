"""The node's fabric address, waited for: ExaBGP cannot listen on an address the host does not
have yet (a node still booting). Its interface's subnets are where iBGP next hops may be."""

from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

from routed.log import event
from routed.netns import async_iproute

log = logging.getLogger("bgp.speaker")  # (the speaker waits on it: its log, as before)

WAIT_INTERVAL = 0.2


def subnets_of(addresses: list[Any]) -> tuple[IPv4Network | IPv6Network, ...]:
    """The subnets of an interface's global addresses, from pyroute2's address dump."""
    return tuple(
        ip_network(f"{a.get('address')}/{a['prefixlen']}", strict=False)
        for a in addresses
        if a.get("address") and not ip_address(a.get("address")).is_link_local
    )


async def wait_for_fabric(address: str, interface: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """Once `address` is on an interface of this host: that interface's subnets."""
    logged = False
    async with async_iproute() as ipr:
        while True:
            dumped = [a async for a in await ipr.addr("dump")]
            present = [a for a in dumped if a.get("address") == address]
            if present:
                return subnets_of([a for a in dumped if a["index"] == present[0]["index"]])
            if not logged:
                log.warning(event("bgp_waiting_for_fabric_address", address=address, interface=interface))
                logged = True
            await asyncio.sleep(WAIT_INTERVAL)
