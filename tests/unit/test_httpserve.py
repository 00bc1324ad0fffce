"""The metrics endpoint's HTTP server, fed what a hostile or broken client sends over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from routed import httpserve
from routed.httpserve import HttpServer, Reply


async def _ok() -> Reply:
    return Reply.text("ok\n")


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    served = HttpServer({"/healthz": _ok, "/data": lambda: _json()}, max_concurrent=2)
    await served.start("127.0.0.1", 0)
    try:
        yield served
    finally:
        await served.close()


async def _json() -> Reply:
    return Reply.json({"ready": True})


async def exchange(server: HttpServer, raw: bytes, timeout: float = 5) -> bytes:
    """Sends raw bytes, returns all the server answers until it closes."""
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(raw)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def test_a_get_is_answered_and_the_connection_closed(server: HttpServer) -> None:
    answer = await exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in answer.lower() and answer.endswith(b"\r\n\r\nok\n")


async def test_json_and_a_query_string(server: HttpServer) -> None:
    answer = await exchange(server, b"GET /data?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"application/json" in answer and answer.endswith(b'{"ready": true}')


async def test_head_has_no_body(server: HttpServer) -> None:
    answer = await exchange(server, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
        (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", b"400"),  # a TLS hello
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (4 * httpserve.MAX_REQUEST) + b"\r\n\r\n",
            b"431",
        ),
    ],
    ids=["unknown path", "POST", "TLS hello", "headers too long"],
)
async def test_bad_requests_get_an_error_not_a_crash(
    server: HttpServer, request_bytes: bytes, status: bytes
) -> None:
    answer = await exchange(server, request_bytes)
    assert answer.split(b" ", 2)[1] == status, answer[:200]
    # and the server goes on serving
    assert (await exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200 ")


async def test_a_client_that_never_finishes_its_request_is_dropped(
    server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(httpserve, "REQUEST_TIMEOUT", 0.2)
    answer = await exchange(server, b"GET /healthz HTTP/1.1\r\nHost:", timeout=5)
    assert answer == b""  # closed without an answer, well before the client's own 5 s
    assert server.in_flight == 0


async def test_a_client_that_closes_at_once_leaves_nothing_behind(server: HttpServer) -> None:
    for _ in range(20):
        _, writer = await asyncio.open_connection(*server.address)
        writer.close()
    await asyncio.sleep(0.1)
    assert server.in_flight == 0
    assert (await exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
