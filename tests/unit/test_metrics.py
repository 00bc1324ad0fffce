"""/metrics and /readyz from a daemon status, `routed status` text and `routed routes` filters (pure)."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from routed.cli import filter_routes
from routed.metrics import StatusCollector, readiness, split_listen
from routed.views import status_text


def peer(address: str, state: str = "up", **extra: Any) -> dict[str, Any]:
    return {
        "address": address,
        "description": "rr1",
        "kind": "reflector",
        "asn": 65000,
        "state": state,
        "since": 1000.0,
        "received": 5,
        "accepted": 3,
        "rejected": 2,
        "rejections": {"outside pools": 2},
        "announced": 4,
        "updates": 7,
        "flaps": 1,
        "last_error": "",
        "graceful_restart": {"local": True, "negotiated": True, "stale": 0, "timer": None},
        **extra,
    }


def status(peers: list[dict[str, Any]], synced: bool = True) -> dict[str, Any]:
    return {
        "node": "h1",
        "role": "node",
        "router_id": "10.0.0.11",
        "asn": 65000,
        "version": "0.1.0",
        "started": time.time() - 200,
        "workloads": 2,
        "metrics": "127.0.0.1:9180",
        "fib": {
            "passes": 3,
            "full_resyncs": 1,
            "added": 9,
            "replaced": 1,
            "deleted": 2,
            "failures": 0,
            "restored": 0,
            "routes": {"workload": 2, "block": 1, "bgp": 6, "leftover": 0},
            "synced": synced,
        },
        "ipam": {
            "mode": "static",
            "blocks": [{"block": "10.65.1.0/26", "used": 2, "size": 62}],
            "outside_blocks": [],
            "addresses": ["10.65.1.2", "10.65.1.3"],
        },
        "bgp": {
            "peers": peers,
            "loc_rib": 6,
            "announced": 1,
            "stale": 0,
            "draining": False,
            "headless_since": None,
            "conflicts": {"current": 0, "list": []},
            "counters": {"messages": 40},
            "exabgp": {"pid": 123, "restarts": 2},
            "ready": True,
        },
    }


def scrape(st: dict[str, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: st))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_follow_the_status() -> None:
    samples = scrape(status([peer("10.0.0.1"), peer("10.0.0.2", state="active", flaps=3)]))
    assert (
        samples[
            ("routed_bgp_session_up", (("description", "rr1"), ("kind", "reflector"), ("peer", "10.0.0.1")))
        ]
        == 1
    )
    assert (
        samples[
            ("routed_bgp_session_up", (("description", "rr1"), ("kind", "reflector"), ("peer", "10.0.0.2")))
        ]
        == 0
    )
    assert samples[("routed_bgp_session_flaps_total", (("peer", "10.0.0.2"),))] == 3
    for direction, value in (("received", 5), ("accepted", 3), ("rejected", 2), ("announced", 4)):
        assert samples[("routed_bgp_prefixes", (("direction", direction), ("peer", "10.0.0.1")))] == value
    rejected = (("peer", "10.0.0.1"), ("reason", "outside pools"))
    assert samples[("routed_bgp_prefixes_rejected_total", rejected)] == 2
    assert samples[("routed_fib_routes", (("origin", "bgp"),))] == 6
    assert samples[("routed_fib_operations_total", (("operation", "replace"),))] == 1
    assert samples[("routed_exabgp_restarts_total", ())] == 2
    assert samples[("routed_workloads", ())] == 2
    assert samples[("routed_ipam_block_used_addresses", (("block", "10.65.1.0/26"),))] == 2
    assert (
        samples[
            ("routed_build_info", (("python", __import__("platform").python_version()), ("version", "0.1.0")))
        ]
        == 1
    )
    assert samples[("routed_bgp_ready", ())] == 1 and samples[("routed_fib_synced", ())] == 1


def test_readiness_needs_a_synced_fib_and_a_session_unless_there_are_no_peers() -> None:
    assert all(readiness(status([peer("10.0.0.1")])).values())
    assert readiness(status([peer("10.0.0.1")], synced=False))["fib_synced"] is False
    assert readiness(status([peer("10.0.0.1", state="active")]))["bgp_session_up"] is False
    assert all(readiness(status([])).values())


def test_split_listen() -> None:
    assert split_listen("127.0.0.1:9180") == ("127.0.0.1", 9180)
    assert split_listen("[::1]:9180") == ("::1", 9180)


def test_status_text_has_the_peer_table_and_fib_totals() -> None:
    text = status_text(status([peer("10.0.0.1")]), now=1000.0 + 192)
    header, row = (line.split() for line in text.splitlines() if line.startswith(("PEER", "10.0.0.1")))
    assert header[:10] == [
        "PEER",
        "DESCRIPTION",
        "KIND",
        "AS",
        "STATE",
        "SINCE",
        "RECV",
        "ACC",
        "REJ",
        "SENT",
    ]
    assert row[:10] == ["10.0.0.1", "rr1", "reflector", "65000", "up", "3m12s", "5", "3", "2", "4"]
    assert "headless no" in text
    assert "fib: 9 routes in the kernel (workload 2, block 1, bgp 6), synced" in text


ROUTES = [
    {"dst": "10.65.1.0/26", "nexthops": [], "source": "local"},
    {"dst": "10.65.2.0/26", "nexthops": [], "source": "bgp", "peer": "10.0.0.1"},
    {"dst": "10.65.2.9/32", "nexthops": [], "source": "bgp", "peer": "10.0.0.2", "stale": "stale"},
    {"dst": "fd00:65::/64", "nexthops": [], "source": "bgp", "peer": "fd00::1"},
]


def dsts(routes: list[dict[str, Any]]) -> list[str]:
    return [r["dst"] for r in routes]


def test_routes_filters() -> None:
    net = ipaddress.ip_network
    assert dsts(filter_routes(ROUTES, prefix=net("10.65.2.0/24"))) == ["10.65.2.0/26", "10.65.2.9/32"]
    # an address: the route it takes, longest match
    assert dsts(filter_routes(ROUTES, prefix=net("10.65.2.7/32"))) == ["10.65.2.0/26"]
    assert dsts(filter_routes(ROUTES, prefix=net("10.65.2.9/32"))) == ["10.65.2.9/32"]
    assert filter_routes(ROUTES, prefix=net("10.99.0.1/32")) == []
    assert dsts(filter_routes(ROUTES, peer=ipaddress.ip_address("10.0.0.2"))) == ["10.65.2.9/32"]
    assert dsts(filter_routes(ROUTES, stale=True)) == ["10.65.2.9/32"]
    assert dsts(filter_routes(ROUTES, prefix=net("fd00::/16"))) == ["fd00:65::/64"]


# --- issue 25, finding 9: scrapes served from a cached status, and bounded ------------------


async def test_fifty_concurrent_scrapes_build_the_status_once_and_all_get_an_answer() -> None:
    import asyncio

    import aiohttp

    from routed.metrics import MetricsServer

    builds = 0

    def build() -> dict[str, Any]:
        nonlocal builds
        builds += 1
        return status([peer("10.0.0.1")])

    server = MetricsServer("127.0.0.1:0", build)
    await server.start()
    try:
        host, port = server.http.address
        async with aiohttp.ClientSession() as session:

            async def get(path: str) -> int:
                async with session.get(f"http://{host}:{port}{path}") as response:
                    await response.read()
                    return response.status

            codes = await asyncio.gather(*(get("/metrics" if i % 2 else "/readyz") for i in range(50)))
        assert set(codes) <= {200, 503} and codes.count(200) >= 4, codes
        assert builds == 1  # fifty scrapes within a second: one status, not fifty
    finally:
        await server.close()


async def test_requests_past_the_bound_are_told_to_come_back(monkeypatch: Any) -> None:
    import asyncio

    import aiohttp

    from routed import metrics
    from routed.httpserve import Reply

    release = asyncio.Event()
    entered = 0

    async def slow(self: metrics.MetricsServer) -> Reply:
        nonlocal entered
        entered += 1
        await release.wait()  # a reader that takes its time
        return Reply.text("ok\n")

    monkeypatch.setattr(metrics.MetricsServer, "_healthz", slow)
    server = metrics.MetricsServer("127.0.0.1:0", lambda: status([]))
    await server.start()
    try:
        host, port = server.http.address
        async with aiohttp.ClientSession() as session:

            async def get() -> int:
                async with session.get(f"http://{host}:{port}/healthz") as response:
                    await response.read()
                    return response.status

            held = [asyncio.create_task(get()) for _ in range(metrics.MAX_CONCURRENT)]
            while entered < metrics.MAX_CONCURRENT:
                await asyncio.sleep(0.01)
            assert await get() == 503 and server.refused == 1
            release.set()
            assert await asyncio.gather(*held) == [200] * metrics.MAX_CONCURRENT
            assert await get() == 200
    finally:
        await server.close()


def test_prefixes_by_family() -> None:
    st = status([peer("10.0.0.1")])
    st["bgp"]["families"] = {
        "ipv4 unicast": {"loc_rib": 6, "stale": 1, "announced": 1},
        "ipv6 unicast": {"loc_rib": 2, "stale": 0, "announced": 1},
    }
    samples = scrape(st)
    assert samples[("routed_bgp_family_prefixes", (("family", "ipv6"), ("table", "loc_rib")))] == 2
    assert samples[("routed_bgp_family_prefixes", (("family", "ipv4"), ("table", "stale")))] == 1
    assert "ipv6: best paths 2, ours 1" in status_text(st)
