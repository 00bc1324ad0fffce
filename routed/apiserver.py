"""The local API's server side (the daemon): JSON lines over a root-only unix socket.
The protocol and the client are in routed.api."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from routed.api import ApiError
from routed.log import event

log = logging.getLogger("routed.api")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
MAX_REQUEST = 1 << 20  # a request line longer than this is refused, and the connection closed
IDLE_TIMEOUT = 30.0  # a client that sends nothing for this long is let go


def _peer_uid(writer: asyncio.StreamWriter) -> int:
    sock = writer.get_extra_info("socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


class ApiServer:
    def __init__(self, path: str, handlers: dict[str, Handler]) -> None:
        self.path = Path(path)
        self._handlers = handlers
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.path.exists():
            if await answers(self.path):
                raise ApiError(
                    f"another routed already listens on {self.path}; stop it or "
                    "set api.socket to another path",
                    exit_code=1,
                )
            self.path.unlink()
        old = os.umask(0o177)  # the socket is born 0600: no window where others can connect
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if _peer_uid(writer) != 0:
                await self._reply(
                    writer, {"ok": False, "error": "the routed API is for root only", "exit_code": 1}
                )
                return
            while line := await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT):
                await self._reply(writer, await self._dispatch(line))
        except ValueError:  # the line overran MAX_REQUEST: what is left of it cannot be framed
            log.warning(event("api_request_refused", reason="too large", limit=MAX_REQUEST))
            with contextlib.suppress(ConnectionError):
                await self._reply(writer, _refusal(f"request larger than {MAX_REQUEST} bytes", 2))
        except TimeoutError:
            log.info(event("api_client_idle", action="closed", after_s=IDLE_TIMEOUT))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        request = parse_request(line)
        if isinstance(request, str):
            log.warning(event("api_request_refused", reason=request))
            return _refusal(f"{request}; ops are {', '.join(sorted(self._handlers))}", 2)
        op = request["op"]
        handler = self._handlers.get(op)
        if handler is None:
            log.warning(event("api_request_refused", reason="unknown op", op=op[:64]))
            return _refusal(f"unknown op {op[:64]!r}; ops are {', '.join(sorted(self._handlers))}", 2)
        try:
            return {"ok": True, "result": await handler(request)}
        except ApiError as exc:
            return _refusal(str(exc), exc.exit_code)
        except (KeyError, TypeError, ValueError) as exc:  # a field missing or of the wrong type
            log.warning(event("api_request_refused", op=op, reason=repr(exc)))
            return _refusal(f"{op}: a field is missing or of the wrong type ({exc!r})", 2)
        except Exception as exc:
            log.exception(event("api_request_failed", op=op))
            return _refusal(f"{op} failed: {exc}", 1)

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, response: dict[str, Any]) -> None:
        writer.write(json.dumps(response).encode() + b"\n")
        await writer.drain()


def _refusal(message: str, exit_code: int) -> dict[str, Any]:
    return {"ok": False, "error": message, "exit_code": exit_code}


def parse_request(line: bytes) -> dict[str, Any] | str:
    """A request object with a string `op`, or why the line is not one. Pure."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, nesting beyond the parser's depth
        return "bad request: not JSON"
    if not isinstance(request, dict):
        return "bad request: not a JSON object"
    if not isinstance(request.get("op"), str):
        return 'bad request: no "op" string'
    return request


async def answers(path: Path) -> bool:
    """Does something listen on this unix socket?"""
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    writer.close()
    return True
