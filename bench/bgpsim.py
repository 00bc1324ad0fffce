"""N simulated iBGP clients of one route reflector, driven from one asyncio process.

Each client is what a routed host looks like to its reflector: its own source address, an
OPEN with the capabilities routed's ExaBGP sends (IPv4 and IPv6 unicast, route refresh,
four-octet AS, graceful restart with forwarding preserved), KEEPALIVEs, its block (and
optionally k /32s) in UPDATEs, then End-of-RIB. It keeps what the reflector sends it as a set
of NLRI (wire bytes) and is a graceful-restart helper: when the session drops without a
NOTIFICATION it keeps the routes as stale, connects again every second, and sweeps whatever
the reflector has not re-sent by its End-of-RIB (counted: a route lost).

Written from RFC 4271/4724/4760 with struct, no BGP library: the figures must be the
reflector's, so the client side does as little as it can per message (one UPDATE's NLRI is a
slice; prefixes are decoded only to be counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

MARKER = b"\xff" * 16
OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4
MP_REACH, MP_UNREACH = 14, 15
HEADER = struct.Struct("!16sHB")


def message(kind: int, body: bytes = b"") -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def _capability(code: int, value: bytes) -> bytes:
    return bytes([2, len(value) + 2, code, len(value)]) + value


def open_message(asn: int, router_id: IPv4Address, hold: int, restart_time: int) -> bytes:
    params = _capability(1, struct.pack("!HBB", 1, 0, 1))  # multiprotocol IPv4 unicast
    params += _capability(1, struct.pack("!HBB", 2, 0, 1))  # and IPv6 unicast
    params += _capability(2, b"")  # route refresh
    params += _capability(65, struct.pack("!I", asn))  # four-octet AS
    # graceful restart: not restarting ourselves, forwarding preserved for both families
    params += _capability(64, struct.pack("!HHBBHBB", restart_time & 0x0FFF, 1, 1, 0x80, 2, 1, 0x80))
    body = struct.pack("!BHH4sB", 4, asn if asn < 65536 else 23456, hold, router_id.packed, len(params))
    return message(OPEN, body + params)


def nlri(prefix: IPv4Network) -> bytes:
    length = prefix.prefixlen
    return bytes([length]) + prefix.network_address.packed[: (length + 7) // 8]


def announce(prefixes: Iterable[IPv4Network], next_hop: IPv4Address) -> bytes:
    """One UPDATE: ORIGIN IGP, an empty AS_PATH (iBGP), NEXT_HOP, LOCAL_PREF 100."""
    attrs = bytes([0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4]) + next_hop.packed
    attrs += bytes([0x40, 5, 4]) + struct.pack("!I", 100)
    return message(UPDATE, struct.pack("!HH", 0, len(attrs)) + attrs + b"".join(map(nlri, prefixes)))


def withdraw(prefixes: Iterable[IPv4Network]) -> bytes:
    withdrawn = b"".join(map(nlri, prefixes))
    return message(UPDATE, struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", 0))


END_OF_RIB_V4 = message(UPDATE, b"\0\0\0\0")
END_OF_RIB_V6 = message(UPDATE, b"\0\0\0\x06" + bytes([0x80, MP_UNREACH, 3, 0, 2, 1]))


def split_nlri(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        size = 1 + (data[i] + 7) // 8
        out.append(data[i : i + size])
        i += size
    return out


def graceful_restart_time(open_body: bytes) -> int | None:
    """The restart time of a GR capability in an OPEN body, None without one."""
    params, i = open_body[10 : 10 + open_body[9]], 0
    while i + 2 <= len(params):
        kind, length = params[i], params[i + 1]
        if kind == 2:
            j, caps = 0, params[i + 2 : i + 2 + length]
            while j + 2 <= len(caps):
                if caps[j] == 64:
                    return int(struct.unpack("!H", caps[j + 2 : j + 4])[0]) & 0x0FFF
                j += 2 + caps[j + 1]
        i += 2 + length
    return None


Watch = Callable[["Client", bytes, bool], None]


@dataclass(eq=False)
class Client(asyncio.Protocol):
    """One simulated host: its session, its announcements, what it holds."""

    sim: Simulator
    index: int
    address: IPv4Address
    routes: list[IPv4Network]
    table: set[bytes] = field(default_factory=set)
    stale: set[bytes] = field(default_factory=set)
    established_at: float | None = None
    end_of_rib_at: float | None = None
    sessions: int = 0
    withdrawn: int = 0
    swept: int = 0
    notifications: list[bytes] = field(default_factory=list)
    peer_restart_time: int | None = None
    transport: asyncio.Transport | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _opened: bool = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._buffer.clear()
        self._opened = False
        transport.write(open_message(self.sim.asn, self.address, self.sim.hold, self.sim.restart_time))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.established_at is None:
            pass  # an attempt that never came up (refused, a collision): what we hold stays as it was
        elif self.peer_restart_time:
            self.stale |= self.table  # a helper keeps them until the reflector's End-of-RIB
        elif self.table:
            self.withdrawn += len(self.table)
            self.table.clear()
        self.established_at = None
        self.end_of_rib_at = None
        self.sim.session_lost(self)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 19:
            length, kind = struct.unpack_from("!HB", buffer, start + 16)
            if len(buffer) - start < length:
                break
            body = bytes(buffer[start + 19 : start + length])
            start += length
            if kind == UPDATE:
                self._update(body)
            elif kind == KEEPALIVE and not self._opened:
                self._established()
            elif kind == OPEN:
                self.peer_restart_time = graceful_restart_time(body)
                assert self.transport is not None
                self.transport.write(message(KEEPALIVE))
            elif kind == NOTIFICATION:
                self.notifications.append(body)
                self.peer_restart_time = None  # a NOTIFICATION ends graceful restart (RFC 4724)
        del buffer[:start]

    def _established(self) -> None:
        self._opened = True
        self.established_at = time.monotonic()
        self.sessions += 1
        assert self.transport is not None
        for start in range(0, len(self.routes), 500):
            self.transport.write(announce(self.routes[start : start + 500], self.address))
        self.transport.write(END_OF_RIB_V4 + END_OF_RIB_V6)
        self.sim.established(self)

    def _update(self, body: bytes) -> None:
        withdrawn_length = (body[0] << 8) | body[1]
        attrs_length = (body[2 + withdrawn_length] << 8) | body[3 + withdrawn_length]
        reach = body[4 + withdrawn_length + attrs_length :]
        watch = self.sim.watch
        if withdrawn_length:
            for prefix in split_nlri(body[2 : 2 + withdrawn_length]):
                if prefix in self.table:
                    self.table.discard(prefix)
                    self.withdrawn += 1
                self.stale.discard(prefix)
                if watch is not None:
                    watch(self, prefix, False)
        if reach:
            for prefix in (reach,) if len(reach) == 1 + (reach[0] + 7) // 8 else split_nlri(reach):
                self.table.add(prefix)
                self.stale.discard(prefix)
                if watch is not None:
                    watch(self, prefix, True)
        elif not withdrawn_length and attrs_length == 0:  # IPv4 End-of-RIB: what was not re-sent is gone
            self.swept += len(self.stale)
            self.table -= self.stale
            self.stale.clear()
            self.end_of_rib_at = time.monotonic()
            self.sim.end_of_rib(self)

    def send(self, data: bytes) -> None:
        if self.transport is not None and self._opened:
            self.transport.write(data)


class Simulator:
    """N clients of one reflector; connects them, keeps them alive, reconnects the dropped."""

    def __init__(
        self,
        reflector: IPv4Address,
        addresses: list[IPv4Address],
        routes: Callable[[int], list[IPv4Network]],
        asn: int = 64512,
        hold: int = 90,
        restart_time: int = 120,
        spread_keepalives: bool = False,
    ) -> None:
        self.reflector = reflector
        self.asn, self.hold, self.restart_time = asn, hold, restart_time
        self.spread_keepalives = spread_keepalives
        self.clients = [Client(self, i, a, routes(i)) for i, a in enumerate(addresses)]
        self.watch: Watch | None = None
        self.up = 0
        self.eor = 0
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.running = True

    # client callbacks
    def established(self, client: Client) -> None:
        self.up += 1
        self._changed.set()

    def end_of_rib(self, client: Client) -> None:
        self.eor += 1
        self._changed.set()

    def session_lost(self, client: Client) -> None:
        self.up = sum(1 for c in self.clients if c.established_at is not None)
        self.eor = sum(1 for c in self.clients if c.end_of_rib_at is not None)
        self._changed.set()
        if self.running:
            self._tasks.append(asyncio.ensure_future(self._connect(client, delay=1.0)))

    async def _connect(self, client: Client, delay: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        while self.running and client.transport is None:
            await asyncio.sleep(delay)
            delay = 1.0  # connect retry
            try:
                await loop.create_connection(
                    lambda: client, str(self.reflector), 179, local_addr=(str(client.address), 0)
                )
                return
            except OSError:
                continue

    async def _keepalives(self) -> None:
        """Each client's KEEPALIVE every hold/3: all at once, or with `spread_keepalives` spread
        over the interval as the timers of hosts that came up at different moments are. At once,
        a reflector reads 1,000 in one burst every 30 s (50-70 ms of routed's ExaBGP in which a
        change trial can fall); spread, it wakes ~33 times a second for one each, and a reflector
        whose every wake-up costs O(N) shows it in its idle CPU (docs/benchmarks.md)."""
        while self.running:
            if not self.spread_keepalives:
                await asyncio.sleep(self.hold / 3)
            gap = self.hold / 3 / max(1, len(self.clients)) if self.spread_keepalives else 0.0
            for client in self.clients:
                client.send(message(KEEPALIVE))
                if gap:
                    await asyncio.sleep(gap)

    async def start(self, rate: float = 0.0) -> None:
        """Connect every client (`rate` a second when given, else all at once)."""
        self._tasks.append(asyncio.ensure_future(self._keepalives()))
        for client in self.clients:
            self._tasks.append(asyncio.ensure_future(self._connect(client)))
            if rate:
                await asyncio.sleep(1 / rate)

    async def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Seconds until `condition` holds; TimeoutError saying `what` after `timeout`."""
        started = time.monotonic()
        while not condition():
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                raise TimeoutError(f"{what}: not within {timeout:.0f} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.05))
        return time.monotonic() - started

    def full_tables(self, expected: int) -> bool:
        return all(len(c.table) >= expected for c in self.clients)

    async def stop(self) -> None:
        self.running = False
        for task in self._tasks:
            task.cancel()
        for client in self.clients:
            if client.transport is not None:
                client.transport.abort()
