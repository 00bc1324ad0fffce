"""EtcdStore asks an endpoint gRPC could not reach a second time before giving up on it, and a
block claim asked again after its answer was lost finds its own key."""

from __future__ import annotations

import asyncio
from ipaddress import ip_network
from types import SimpleNamespace
from typing import Any

import aetcd
import aetcd.exceptions
import pytest

from routed.ipam import etcdstore
from routed.ipam.blocks import IPNetwork
from routed.ipam.etcdstore import EtcdStore, EtcdUnreachable, block_key


class _Version:
    """`version(key) == 0`, the only compare a claim makes, evaluated when it is built."""

    def __init__(self, etcd: _Etcd, key: bytes) -> None:
        self.etcd, self.key = etcd, key

    def __eq__(self, other: object) -> bool:
        return other == 0 and self.key not in self.etcd.kv

    __hash__ = None  # type: ignore[assignment]


class _Etcd:
    """A key-value store that answers a claim's transaction and get, failing as told."""

    def __init__(self, fail_after_applying: int = 0) -> None:
        self.kv: dict[bytes, bytes] = {}
        self.fail_after_applying = fail_after_applying
        self.transactions = self

    def version(self, key: bytes) -> _Version:
        return _Version(self, key)

    def put(self, key: bytes, value: bytes) -> tuple[bytes, bytes]:
        return key, value

    async def transaction(self, compare: list[bool], success: list[Any], failure: list[Any]) -> Any:
        if not all(compare):
            return False, []
        for key, value in success:
            self.kv[key] = value
        if self.fail_after_applying:
            self.fail_after_applying -= 1
            raise UNAVAILABLE  # applied, but the answer was lost on the way back
        return True, []

    async def get(self, key: bytes) -> Any:
        value = self.kv.get(key)
        return None if value is None else SimpleNamespace(value=value)

    async def close(self) -> None:
        pass


def _store(
    endpoints: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, etcd: _Etcd | None = None
) -> tuple[EtcdStore, list[str]]:
    """A store whose channels are `etcd` (a new empty one each time if None), and the endpoints
    it opened a channel to, in order."""
    store = EtcdStore(endpoints, "/routed", timeout=0.01)
    connected: list[str] = []

    async def connected_client() -> Any:
        if store._client is None:
            connected.append(store.endpoints[store._current])
            store._client = etcd or _Etcd()  # type: ignore[assignment]
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


UNAVAILABLE: Exception = aetcd.exceptions.ConnectionFailedError("failed to connect to all addresses")


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


BLOCK: IPNetwork = ip_network("10.65.1.0/26")


def test_a_claim_whose_answer_was_lost_is_still_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    etcd = _Etcd(fail_after_applying=1)
    store, _ = _store(("127.0.0.1:2379",), monkeypatch, etcd)
    assert asyncio.run(store.claim(BLOCK, "h1", 1.0)) is True
    assert b'"node": "h1"' in etcd.kv[block_key("/routed", BLOCK)]


def test_a_block_another_node_holds_is_not_claimed(monkeypatch: pytest.MonkeyPatch) -> None:
    etcd = _Etcd()
    store, _ = _store(("127.0.0.1:2379",), monkeypatch, etcd)
    assert asyncio.run(store.claim(BLOCK, "h2", 1.0)) is True
    assert asyncio.run(store.claim(BLOCK, "h1", 2.0)) is False
    etcd.kv[block_key("/routed", BLOCK)] = b"not json"
    assert asyncio.run(store.claim(BLOCK, "h1", 3.0)) is False
