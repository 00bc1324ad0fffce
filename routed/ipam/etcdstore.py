"""Blocks and allocations in etcd (v3), through aetcd: the only module that talks to etcd.

Keys (under `ipam.etcd.prefix`, default /routed):
    <prefix>/ipam/v1/blocks/10.65.1.0-26      {"node": "h1", "claimed": 1795680000.0}
    <prefix>/ipam/v1/addresses/10.65.1.1      {"node": "h1", "workload": "h1-web1"}

Every write that decides ownership is a transaction comparing the key's version (create only
if absent) or its value (delete only what we wrote), as Calico's etcd datastore does: two
nodes racing for the last free block both send a create-if-absent, and etcd lets one win.

Requests go to one endpoint at a time; a request that cannot be answered (member down, no
quorum, timeout) moves on to the next endpoint, and only when every endpoint failed does
the caller hear `EtcdUnreachable`. A request gRPC could not deliver at all (UNAVAILABLE) is
asked once more on the same endpoint first, so every write is safe to ask twice: a create
that finds its own record counts as done.

What etcd returns is not trusted: a key or value routed would not have written is skipped and
logged once (never an exception out of a listing, which would stop the node's IPAM upkeep).
Endpoints may be reached over TLS (a CA, and a client certificate when etcd asks for one) and
with etcd's user authentication.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions
import aetcd.rpc
import aetcd.watcher
import grpc

from routed.config.services import EtcdTls
from routed.config.types import NODE_NAME, WORKLOAD_ID
from routed.ipam.blocks import IPAddress, IPNetwork
from routed.log import event

log = logging.getLogger("routed.ipam")

T = TypeVar("T")


class EtcdUnreachable(Exception):
    pass


class BadRecord(ValueError):
    """A key or value in etcd that routed would not have written."""


MALFORMED = "(malformed record)"  # the holder of an address whose record cannot be read


@dataclass(frozen=True, slots=True)
class Allocation:
    node: str
    workload: str


def block_key(prefix: str, block: IPNetwork) -> bytes:
    return f"{prefix}/ipam/v1/blocks/{block.network_address}-{block.prefixlen}".encode()


def address_key(prefix: str, ip: IPAddress) -> bytes:
    return f"{prefix}/ipam/v1/addresses/{ip}".encode()


def _block_from_key(key: bytes) -> IPNetwork:
    try:
        address, length = key.decode().rsplit("/", 1)[1].rsplit("-", 1)
        if not re.fullmatch(r"\d{1,3}", length):
            raise ValueError(f"prefix length {length!r}")
        return ip_network(f"{address}/{length}")  # strict: no host bits
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRecord(f"key is not <address>-<length> of a block ({exc})") from exc


def _object(value: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRecord(f"value is not JSON ({exc})") from exc
    if not isinstance(parsed, dict):
        raise BadRecord("value is not a JSON object")
    return parsed


def _node(value: dict[str, Any]) -> str:
    node = value.get("node")
    if not isinstance(node, str) or not NODE_NAME.match(node):
        raise BadRecord(f"node {node!r} is not a node name")
    return node


def _allocation(key: bytes, value: bytes) -> tuple[IPAddress, Allocation]:
    try:
        ip = ip_address(key.decode().rsplit("/", 1)[1])
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRecord(f"key does not end in an address ({exc})") from exc
    record = _object(value)
    workload = record.get("workload")
    if not isinstance(workload, str) or not WORKLOAD_ID.match(workload):
        raise BadRecord(f"workload {workload!r} is not a workload id")
    return ip, Allocation(_node(record), workload)


def _credentials(tls: EtcdTls) -> grpc.ChannelCredentials:
    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        with open(path, "rb") as handle:
            return handle.read()

    return grpc.ssl_channel_credentials(read(tls.ca_file), read(tls.key_file), read(tls.cert_file))


class SecureClient(aetcd.Client):  # type: ignore[misc]
    """aetcd 1.0 opens plain channels only: the same connection steps over a TLS channel."""

    def __init__(self, credentials: grpc.ChannelCredentials, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._channel_credentials = credentials

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        try:
            self.channel = grpc.aio.secure_channel(
                f"{self._host}:{self._port}", self._channel_credentials, options=list(self._options.items())
            )
            if self._username is not None and self._password is not None:
                self.auth_stub = aetcd.rpc.AuthStub(self.channel)
                request = aetcd.rpc.AuthenticateRequest(name=self._username, password=self._password)
                response = await self.auth_stub.Authenticate(request, timeout=self._timeout)
                self.metadata = (("token", response.token),)
            self.kvstub = aetcd.rpc.KVStub(self.channel)
            self.clusterstub = aetcd.rpc.ClusterStub(self.channel)
            self.leasestub = aetcd.rpc.LeaseStub(self.channel)
            self.maintenancestub = aetcd.rpc.MaintenanceStub(self.channel)
            self._watcher = aetcd.watcher.Watcher(
                aetcd.rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        except aetcd.rpc.AioRpcError as exc:
            aetcd.exceptions._handle_exception(exc)


# gRPC shares one connection per target between channels by default, with its reconnect backoff
# (1 s, then 1.6 times longer each failure, up to 120 s): a node whose daemon started before its
# network found etcd "unreachable" for minutes after the network came up, every new client
# inheriting the old failure. A client of its own per channel connects afresh each time, and a
# channel kept open retries at least once a second.
CHANNEL_OPTIONS: dict[str, int] = {
    "grpc.use_local_subchannel_pool": 1,
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
}


UNAVAILABLE_RETRY_DELAY = 0.1  # seconds before asking an endpoint gRPC could not reach again


class EtcdStore:
    def __init__(
        self,
        endpoints: tuple[str, ...],
        prefix: str,
        timeout: float,
        tls: EtcdTls | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.prefix = prefix.rstrip("/")
        self.timeout = timeout
        self.tls = tls
        self.credentials = credentials
        self._current = 0
        self._client: aetcd.Client | None = None
        self._bad_keys_logged: set[bytes] = set()
        self._closing: set[asyncio.Task[None]] = set()  # clients discarded after a failure

    def skip(self, key: bytes, problem: BadRecord) -> None:
        """A record another reader of this etcd (the node registry) would not take either."""
        self._skip(key, problem)

    def _skip(self, key: bytes, problem: BadRecord) -> None:
        """A record routed would not have written: skipped, and said once per key."""
        if key not in self._bad_keys_logged:
            self._bad_keys_logged.add(key)
            log.error(
                event(
                    "etcd_record_skipped",
                    key=key.decode(errors="replace")[:200],
                    reason=problem,
                    fix="delete or repair it (etcdctl del KEY); routed never writes such a record",
                )
            )

    def _discard(self) -> None:
        """Drop the client after a failure, closing it only once the requests still in flight
        on it have had their time: closing it at once cancelled them, and a CancelledError
        out of another task's request (IPAM's upkeep beside a workload's add) ended the daemon."""
        client, self._client = self._client, None
        if client is not None:
            asyncio.get_running_loop().call_later(self.timeout + 1, self._close_later, client)

    def _close_later(self, client: aetcd.Client) -> None:
        task = asyncio.get_running_loop().create_task(client.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _connected(self) -> aetcd.Client:
        if self._client is None:
            host, _, port = self.endpoints[self._current].removeprefix("https://").rpartition(":")
            username, password = self.credentials or (None, None)
            settings: dict[str, Any] = {
                "host": host.strip("[]"),
                "port": int(port),
                "timeout": int(max(1, self.timeout)),
                "username": username,
                "password": password,
                "options": CHANNEL_OPTIONS,
            }
            client = (
                aetcd.Client(**settings)
                if self.tls is None
                else SecureClient(_credentials(self.tls), **settings)
            )
            await client.connect()
            self._client = client
        return self._client

    async def call(self, what: str, request: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """`request` on a connected client, failing over between the endpoints (the registry's)."""
        return await self._call(what, request)

    async def _call(self, what: str, request: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        errors = []
        for _ in self.endpoints:
            endpoint = self.endpoints[self._current]
            try:
                return await self._on_current(request)
            except (aetcd.exceptions.ClientError, OSError) as exc:
                # ClientError covers more than the connection: a member that lost its quorum
                # answers "context deadline exceeded" (UNKNOWN) to every request; try the next
                detail = " ".join(str(exc).split())[:160]  # e.g. "authentication failed ..."
                errors.append(f"{endpoint}: {type(exc).__name__}" + (f" ({detail})" if detail else ""))
                log.warning(
                    event("etcd_request_failed", endpoint=endpoint, request=what, reason=type(exc).__name__)
                )
                self._discard()
                self._current = (self._current + 1) % len(self.endpoints)
        raise EtcdUnreachable(f"etcd is unreachable ({'; '.join(errors)})")

    async def _on_current(self, request: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """`request` on the current endpoint, asked a second time on a fresh channel when gRPC
        could not reach it at all (UNAVAILABLE, "failed to connect to all addresses"): under
        load a channel's first connect can lose its race with the deadline while the member is
        fine, and with one endpoint that failure alone made a node report etcd unreachable.
        etcd's own clientv3 retries such requests the same way."""
        try:
            return await request(await self._connected())
        except aetcd.exceptions.ConnectionFailedError:
            self._discard()
            await asyncio.sleep(UNAVAILABLE_RETRY_DELAY)
            return await request(await self._connected())

    # --- blocks -----------------------------------------------------------------------

    async def blocks(self) -> dict[IPNetwork, str]:
        """Every claimed block and the node that owns it."""

        async def request(client: aetcd.Client) -> dict[IPNetwork, str]:
            found = await client.get_prefix(f"{self.prefix}/ipam/v1/blocks/".encode())
            blocks: dict[IPNetwork, str] = {}
            for kv in found:
                try:
                    blocks[_block_from_key(kv.key)] = _node(_object(kv.value))
                except BadRecord as problem:
                    self._skip(kv.key, problem)
            return blocks

        return await self._call("list blocks", request)

    async def claim(self, block: IPNetwork, node: str, now: float) -> bool:
        """Create the block's key for `node` if nobody has: True if we got it, or had it already
        (a claim asked again after its answer was lost finds its own key)."""
        key = block_key(self.prefix, block)
        value = json.dumps({"node": node, "claimed": now}).encode()

        async def request(client: aetcd.Client) -> bool:
            ok, _ = await client.transaction(
                compare=[client.transactions.version(key) == 0],
                success=[client.transactions.put(key, value)],
                failure=[],
            )
            if ok:
                return True
            current = await client.get(key)
            if current is None:
                return False  # released in between; the caller tries the next candidate
            try:
                return _node(_object(current.value)) == node
            except BadRecord as problem:
                self._skip(key, problem)
                return False

        return await self._call(f"claim {block}", request)

    async def release_block(self, block: IPNetwork, node: str) -> bool:
        """Delete the block's key if `node` still owns it."""
        key = block_key(self.prefix, block)

        async def request(client: aetcd.Client) -> bool:
            current = await client.get(key)
            try:
                if current is None or _node(_object(current.value)) != node:
                    return False
            except BadRecord as problem:
                self._skip(key, problem)
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
                try:
                    ip, allocation = _allocation(kv.key, kv.value)
                except BadRecord as problem:
                    self._skip(kv.key, problem)
                    continue
                out[ip] = allocation
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
            try:
                _, holder = _allocation(key, current.value)
            except BadRecord as problem:
                self._skip(key, problem)
                return Allocation(MALFORMED, MALFORMED)  # held, by nobody we can name: not ours
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
