"""Blocks and allocations in etcd (v3), through aetcd: the only module that talks to etcd.

Keys (under `ipam.etcd.prefix`, default /routed):
    <prefix>/ipam/v1/blocks/10.65.1.0-26      {"node": "h1", "claimed": 1795680000.0}
    <prefix>/ipam/v1/addresses/10.65.1.1      {"node": "h1", "workload": "h1-web1"}

Every write that decides ownership is a transaction comparing the key's version (create only
if absent) or its value (delete only what we wrote), as Calico's etcd datastore does: two
nodes racing for the last free block both send a create-if-absent, and etcd lets one win.

Requests go to one endpoint at a time; a request that cannot be answered (member down, no
quorum, timeout) moves on to the next endpoint, and only when every endpoint failed does
the caller hear `EtcdUnreachable`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions

from routed.ipam.blocks import IPAddress, IPNetwork
from routed.log import event

log = logging.getLogger("routed.ipam")

T = TypeVar("T")


class EtcdUnreachable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Allocation:
    node: str
    workload: str


def block_key(prefix: str, block: IPNetwork) -> bytes:
    return f"{prefix}/ipam/v1/blocks/{block.network_address}-{block.prefixlen}".encode()


def address_key(prefix: str, ip: IPAddress) -> bytes:
    return f"{prefix}/ipam/v1/addresses/{ip}".encode()


def _block_from_key(key: bytes) -> IPNetwork:
    address, length = key.decode().rsplit("/", 1)[1].rsplit("-", 1)
    return ip_network(f"{address}/{length}")


class EtcdStore:
    def __init__(self, endpoints: tuple[str, ...], prefix: str, timeout: float) -> None:
        self.endpoints = endpoints
        self.prefix = prefix.rstrip("/")
        self.timeout = timeout
        self._current = 0
        self._client: aetcd.Client | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _connected(self) -> aetcd.Client:
        if self._client is None:
            host, _, port = self.endpoints[self._current].rpartition(":")
            client = aetcd.Client(host=host.strip("[]"), port=int(port), timeout=int(max(1, self.timeout)))
            await client.connect()
            self._client = client
        return self._client

    async def _call(self, what: str, request: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        errors = []
        for _ in self.endpoints:
            endpoint = self.endpoints[self._current]
            try:
                return await request(await self._connected())
            except (aetcd.exceptions.ClientError, OSError) as exc:
                # ClientError covers more than the connection: a member that lost its quorum
                # answers "context deadline exceeded" (UNKNOWN) to every request; try the next
                errors.append(f"{endpoint}: {type(exc).__name__}")
                log.warning(
                    event("etcd_request_failed", endpoint=endpoint, request=what, reason=type(exc).__name__)
                )
                await self.close()
                self._current = (self._current + 1) % len(self.endpoints)
        raise EtcdUnreachable(f"etcd is unreachable ({'; '.join(errors)})")

    # --- blocks -----------------------------------------------------------------------

    async def blocks(self) -> dict[IPNetwork, str]:
        """Every claimed block and the node that owns it."""

        async def request(client: aetcd.Client) -> dict[IPNetwork, str]:
            found = await client.get_prefix(f"{self.prefix}/ipam/v1/blocks/".encode())
            return {_block_from_key(kv.key): json.loads(kv.value)["node"] for kv in found}

        return await self._call("list blocks", request)

    async def claim(self, block: IPNetwork, node: str, now: float) -> bool:
        """Create the block's key for `node` if nobody has: True if we got it."""
        key = block_key(self.prefix, block)
        value = json.dumps({"node": node, "claimed": now}).encode()

        async def request(client: aetcd.Client) -> bool:
            ok, _ = await client.transaction(
                compare=[client.transactions.version(key) == 0],
                success=[client.transactions.put(key, value)],
                failure=[],
            )
            return bool(ok)

        return await self._call(f"claim {block}", request)

    async def release_block(self, block: IPNetwork, node: str) -> bool:
        """Delete the block's key if `node` still owns it."""
        key = block_key(self.prefix, block)

        async def request(client: aetcd.Client) -> bool:
            current = await client.get(key)
            if current is None or json.loads(current.value).get("node") != node:
                return False
            ok, _ = await client.transaction(
                compare=[client.transactions.mod(key) == current.mod_revision],
                success=[client.transactions.delete(key)],
                failure=[],
            )
            return bool(ok)

        return await self._call(f"release {block}", request)

    # --- addresses --------------------------------------------------------------------

    async def allocations(self) -> dict[IPAddress, Allocation]:
        async def request(client: aetcd.Client) -> dict[IPAddress, Allocation]:
            found = await client.get_prefix(f"{self.prefix}/ipam/v1/addresses/".encode())
            out = {}
            for kv in found:
                value: dict[str, Any] = json.loads(kv.value)
                out[ip_address(kv.key.decode().rsplit("/", 1)[1])] = Allocation(
                    value["node"], value["workload"]
                )
            return out

        return await self._call("list addresses", request)

    async def record(self, ip: IPAddress, allocation: Allocation) -> Allocation | None:
        """Record an address as `allocation`'s; returns the holder if someone else has it."""
        key = address_key(self.prefix, ip)
        value = json.dumps({"node": allocation.node, "workload": allocation.workload}).encode()

        async def request(client: aetcd.Client) -> Allocation | None:
            ok, _ = await client.transaction(
                compare=[client.transactions.version(key) == 0],
                success=[client.transactions.put(key, value)],
                failure=[],
            )
            if ok:
                return None
            current = await client.get(key)
            if current is None:
                return None  # released in between; the next attempt records it
            held: dict[str, Any] = json.loads(current.value)
            holder = Allocation(held["node"], held["workload"])
            return None if holder == allocation else holder

        return await self._call(f"record {ip}", request)

    async def forget(self, ip: IPAddress, allocation: Allocation) -> None:
        """Delete an address record if it is still `allocation`'s."""
        key = address_key(self.prefix, ip)
        value = json.dumps({"node": allocation.node, "workload": allocation.workload}).encode()

        async def request(client: aetcd.Client) -> None:
            await client.transaction(
                compare=[client.transactions.value(key) == value],
                success=[client.transactions.delete(key)],
                failure=[],
            )

        await self._call(f"forget {ip}", request)
