"""The node registry in etcd: every node with etcd configured registers itself, and a
reflector with `peers: - {registry: etcd, kind: client}` takes its clients from it (Calico's
BIRD config is made from its datastore the same way): joins and leaves are followed without a
restart and without touching other sessions (the speaker reloads only what changed).

    <prefix>/nodes/v1/<name>    {"node": "h1", "addresses": ["10.0.0.11"], "asn": 64512}

A node's key lives under a lease it keeps alive: a node that stops for good stops refreshing
it and its key goes after LEASE_TTL_S. A reflector keeps a client that left for as long as
the speaker holds anything of it (its session up, or its routes kept through its graceful
restart), then forgets it. Every record is hostile input: a key or value routed would not
have written, an address of a family the fabric lacks, or this node's own, is skipped and
said once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from ipaddress import ip_address
from typing import Any

import aetcd

from routed.config import NodeConfig
from routed.config.types import NODE_NAME, IPAddress
from routed.ipam.etcdstore import BadRecord, EtcdStore, EtcdUnreachable
from routed.log import event

log = logging.getLogger("routed.registry")

LEASE_TTL_S = 30  # a node gone for good leaves the registry this long after its last refresh
POLL_S = 2.0  # how often a reflector reads the registry


class BadNode(BadRecord):
    """A registry record routed would not have written."""


def node_key(prefix: str, name: str) -> bytes:
    return f"{prefix}/nodes/v1/{name}".encode()


def record(cfg: NodeConfig) -> bytes:
    addresses = [str(a) for a in cfg.fabric.addresses]
    return json.dumps({"node": cfg.name, "addresses": addresses, "asn": cfg.asn}).encode()


def parse(key: bytes, value: bytes, prefix: str) -> tuple[str, tuple[IPAddress, ...]]:
    """(node name, its fabric addresses) of one record, or BadNode saying what is wrong."""
    try:
        name = key.decode().removeprefix(f"{prefix}/nodes/v1/")
        data = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadNode(f"not a registry record ({exc})") from exc
    if not NODE_NAME.match(name) or not isinstance(data, dict) or data.get("node") != name:
        raise BadNode("the key and its node name do not agree")
    raw = data.get("addresses")
    if not isinstance(raw, list) or not 1 <= len(raw) <= 2 or not all(isinstance(a, str) for a in raw):
        raise BadNode("addresses must be a list of one or two addresses")
    try:
        addresses = tuple(ip_address(a) for a in raw)
    except ValueError as exc:
        raise BadNode(f"an address does not parse ({exc})") from exc
    if any(a.is_multicast or a.is_unspecified or a.is_loopback for a in addresses):
        raise BadNode("an address is not one a host peers from")
    return name, addresses


async def _refresh(lease_id: int, client: aetcd.Client) -> Any:
    return await client.refresh_lease(lease_id)


class NodeRegistry:
    """This node's own record, and, on a reflector with a `registry` peer, its clients'."""

    def __init__(
        self,
        cfg: NodeConfig,
        store: EtcdStore,
        changed: Callable[[frozenset[IPAddress]], Awaitable[None]],
        holds: Callable[[IPAddress], bool],
    ) -> None:
        """`changed(clients)`: the registered clients the speaker should have now; `holds(a)`:
        whether the speaker still holds anything of a client (its session or its routes)."""
        self.cfg = cfg  # a reload may replace it
        self.store = store
        self._changed, self._holds = changed, holds
        self.clients: frozenset[IPAddress] = frozenset()

    async def run(self) -> None:
        try:
            await asyncio.gather(self._register(), self._follow())
        finally:
            await self.store.close()

    # --- this node ---------------------------------------------------------------------

    async def _register(self) -> None:
        lease: Any = None
        while True:
            try:
                if lease is None:
                    lease = await self._put()
                    log.info(event("registry_registered", node=self.cfg.name, ttl_s=LEASE_TTL_S))
                else:
                    answer = await self.store.call("refresh lease", functools.partial(_refresh, lease.id))
                    if getattr(answer, "TTL", 1) <= 0:  # it ran out meanwhile, and the key with it
                        lease = None
                        continue
            except (EtcdUnreachable, aetcd.exceptions.ClientError) as exc:
                log.warning(event("registry_refresh_failed", node=self.cfg.name, reason=exc))
                lease = None  # put again (a new lease) once etcd answers
            await asyncio.sleep(LEASE_TTL_S / 3)

    async def _put(self) -> Any:
        key, value = node_key(self.store.prefix, self.cfg.name), record(self.cfg)

        async def request(client: aetcd.Client) -> Any:
            lease = await client.lease(LEASE_TTL_S)
            await client.put(key, value, lease=lease)
            return lease

        return await self.store.call("register", request)

    async def leave(self) -> None:
        """A decommission: the record goes now, not when its lease runs out."""
        key = node_key(self.store.prefix, self.cfg.name)
        try:
            await self.store.call("deregister", lambda client: client.delete(key))
        except EtcdUnreachable as exc:
            log.warning(event("registry_leave_failed", node=self.cfg.name, reason=exc))

    # --- a reflector's clients -----------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            if self.cfg.peer_registry is not None:
                try:
                    await self._read()
                except EtcdUnreachable as exc:
                    log.warning(event("registry_read_failed", reason=exc, action="clients kept as they are"))
            await asyncio.sleep(POLL_S)

    async def _read(self) -> None:
        prefix = f"{self.store.prefix}/nodes/v1/".encode()
        found = await self.store.call("read registry", lambda client: client.get_prefix(prefix))
        registered: set[IPAddress] = set()
        for kv in found:
            try:
                _, addresses = parse(kv.key, kv.value, self.store.prefix)
            except BadNode as exc:
                self.store.skip(kv.key, exc)  # said once per key, as IPAM's own records are
                continue
            registered.update(addresses)
        registered = self._eligible(registered)
        # a client gone from the registry stays while the speaker holds anything of it
        wanted = frozenset(registered | {a for a in self.clients if self._holds(a)})
        if wanted != self.clients:
            joined, left = wanted - self.clients, self.clients - wanted
            self.clients = wanted
            log.info(
                event(
                    "registry_clients_changed",
                    joined=",".join(map(str, sorted(joined))) or "none",
                    left=",".join(map(str, sorted(left))) or "none",
                    clients=len(wanted),
                )
            )
            await self._changed(wanted)

    def _eligible(self, addresses: set[IPAddress]) -> set[IPAddress]:
        """The clients the speaker can take: of a fabric family, not us, not a listed peer."""
        cfg = self.cfg
        excluded = {*cfg.fabric.addresses, cfg.router_id, *(p.address for p in cfg.listed_peers)}
        return {a for a in addresses - excluded if cfg.fabric.address_for(a.version) is not None}


def for_node(
    cfg: NodeConfig,
    changed: Callable[[frozenset[IPAddress]], Awaitable[None]],
    holds: Callable[[IPAddress], bool],
) -> NodeRegistry | None:
    """The registry of a node with etcd configured, else None. A connection of its own: a
    failed request closes its store's client, which would cancel IPAM's requests in flight."""
    settings = cfg.ipam.etcd
    if settings is None:
        return None
    store = EtcdStore(
        settings.endpoints, settings.prefix, settings.timeout, settings.tls, settings.credentials()
    )
    return NodeRegistry(cfg, store, changed, holds)
