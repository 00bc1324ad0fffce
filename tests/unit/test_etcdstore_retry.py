"""EtcdStore asks an endpoint gRPC could not reach a second time before giving up on it."""

from __future__ import annotations

import asyncio
from typing import Any

import aetcd
import aetcd.exceptions
import pytest

from routed.ipam import etcdstore
from routed.ipam.etcdstore import EtcdStore, EtcdUnreachable


class _Client:
    async def close(self) -> None:
        pass


def _store(endpoints: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> tuple[EtcdStore, list[str]]:
    store = EtcdStore(endpoints, "/routed", timeout=0.01)
    connected: list[str] = []

    async def connected_client() -> Any:
        if store._client is None:
            connected.append(store.endpoints[store._current])
            store._client = _Client()  # type: ignore[assignment]
        return store._client

    monkeypatch.setattr(store, "_connected", connected_client)
    monkeypatch.setattr(etcdstore, "UNAVAILABLE_RETRY_DELAY", 0)
    return store, connected


def _failing(times: int, exc: Exception) -> tuple[Any, list[int]]:
    calls: list[int] = []

    async def request(client: aetcd.Client) -> str:
        calls.append(1)
        if len(calls) <= times:
            raise exc
        return "answer"

    return request, calls


UNAVAILABLE = aetcd.exceptions.ConnectionFailedError("failed to connect to all addresses")


def test_one_unavailable_answer_does_not_make_a_single_endpoint_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, connected = _store(("127.0.0.1:2379",), monkeypatch)
    request, calls = _failing(1, UNAVAILABLE)
    assert asyncio.run(store.call("list blocks", request)) == "answer"
    assert len(calls) == 2
    assert connected == ["127.0.0.1:2379", "127.0.0.1:2379"]  # the retry is on a fresh channel


def test_an_endpoint_unavailable_twice_is_left_for_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    store, connected = _store(("10.0.0.1:2379", "10.0.0.2:2379"), monkeypatch)
    request, calls = _failing(2, UNAVAILABLE)
    assert asyncio.run(store.call("list blocks", request)) == "answer"
    assert len(calls) == 3
    assert connected == ["10.0.0.1:2379", "10.0.0.1:2379", "10.0.0.2:2379"]


def test_other_errors_move_on_without_a_second_try(monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = _store(("10.0.0.1:2379",), monkeypatch)
    request, calls = _failing(1, aetcd.exceptions.InternalError("context deadline exceeded"))
    with pytest.raises(EtcdUnreachable, match=r"10\.0\.0\.1:2379: InternalError"):
        asyncio.run(store.call("list blocks", request))
    assert len(calls) == 1


def test_a_single_endpoint_that_stays_unavailable_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = _store(("127.0.0.1:2379",), monkeypatch)
    request, calls = _failing(5, UNAVAILABLE)
    with pytest.raises(EtcdUnreachable, match="ConnectionFailedError"):
        asyncio.run(store.call("list blocks", request))
    assert len(calls) == 2
