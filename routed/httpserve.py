"""A small HTTP/1.1 server in the daemon's event loop: h11 parses, asyncio streams carry.

The metrics endpoint is its only user. It replaced aiohttp's server because aiohttp costs an
idle host 9.3 MB of its 50 MB budget (issue 30, NOTES.md) and h11 0.4 MB. One request per
connection (`Connection: close`), GET and HEAD only; a request must arrive whole within
REQUEST_TIMEOUT and fit MAX_REQUEST bytes, and at most `max_concurrent` are answered at once
(the rest get 503 at once), so a slow or flooding client cannot hold routing's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import h11

from routed.log import event

log = logging.getLogger("routed.http")

REQUEST_TIMEOUT = 10.0  # seconds for a request line and headers to arrive
WRITE_TIMEOUT = 30.0  # seconds for a reader to take the answer
MAX_REQUEST = 16 * 1024  # bytes of request line and headers


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, text: str, status: int = 200, **headers: str) -> Reply:
        return cls(status, text.encode(), headers=headers)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Reply:
        return cls(status, json.dumps(value).encode(), "application/json; charset=utf-8")


Handler = Callable[[], Awaitable[Reply]]


class HttpServer:
    """Serves `routes` ({path: handler}) on host:port; `refused` counts the 503s of a full house."""

    def __init__(self, routes: Mapping[str, Handler], max_concurrent: int) -> None:
        self.routes = dict(routes)
        self.max_concurrent = max_concurrent
        self.in_flight = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        """Binds, or raises OSError."""
        self._server = await asyncio.start_server(self._connection, host, port, reuse_address=True)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound: port 0 asks the kernel for one."""
        assert self._server is not None and self._server.sockets
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
        try:
            request = await asyncio.wait_for(_read_request(conn, reader), REQUEST_TIMEOUT)
            if request is not None:
                await self._serve(conn, writer, request)
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(Exception):
                reply = Reply.text(f"bad request: {exc}\n", exc.error_status_hint)
                await asyncio.wait_for(_write(conn, writer, reply), 1)
        except (TimeoutError, ConnectionError, h11.LocalProtocolError):
            pass  # the client went away or took too long: nothing to answer
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, conn: h11.Connection, writer: asyncio.StreamWriter, request: h11.Request) -> None:
        head_only = request.method == b"HEAD"
        path = request.target.decode("ascii", "replace").split("?", 1)[0]
        handler = self.routes.get(path)
        if request.method not in (b"GET", b"HEAD"):
            reply = Reply(405, b"GET only\n", headers={"Allow": "GET, HEAD"})
        elif handler is None:
            reply = Reply.text(f"not found: try {', '.join(sorted(self.routes))}\n", 404)
        elif self.in_flight >= self.max_concurrent:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning(event("http_busy", in_flight=self.in_flight, refused=self.refused))
            reply = Reply.text("busy: too many concurrent requests\n", 503, **{"Retry-After": "1"})
        else:
            # the slot is held until the answer is written: a slow reader counts as in flight
            self.in_flight += 1
            try:
                reply = await handler()
                await asyncio.wait_for(_write(conn, writer, reply, head_only), WRITE_TIMEOUT)
            finally:
                self.in_flight -= 1
            return
        await asyncio.wait_for(_write(conn, writer, reply, head_only), WRITE_TIMEOUT)


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
    while True:
        got = conn.next_event()
        if got is h11.NEED_DATA:
            conn.receive_data(await reader.read(4096))
        elif isinstance(got, h11.Request):
            return got
        else:  # the client closed before sending a request
            return None


async def _write(
    conn: h11.Connection, writer: asyncio.StreamWriter, reply: Reply, head_only: bool = False
) -> None:
    headers = [
        ("Content-Type", reply.content_type),
        ("Content-Length", str(len(reply.body))),
        ("Connection", "close"),
        *reply.headers.items(),
    ]
    writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)) or b"")
    if reply.body and not head_only:
        writer.write(conn.send(h11.Data(data=reply.body)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()
