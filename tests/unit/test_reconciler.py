"""The reconciler against an in-memory kernel: it converges, restores, and keeps its hands off."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from ipaddress import ip_address, ip_network

import pytest

from routed.fib.reconciler import Reconciler, apply_once
from routed.fib.routes import gateway_route, local_route
from tests.unit.fakekernel import FakeKernel

A = local_route(ip_network("10.65.0.1/32"), "rtaaaa")
B = gateway_route(ip_network("10.65.1.1/32"), (ip_address("10.0.0.12"),))
B_LOCAL = local_route(ip_network("10.65.1.1/32"), "rtbbbb")
STALE = gateway_route(ip_network("10.65.9.9/32"), (ip_address("10.0.0.19"),))


async def until(condition, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


@contextlib.asynccontextmanager
async def running(rec: Reconciler) -> AsyncIterator[Reconciler]:
    task = asyncio.create_task(rec.run())
    try:
        yield rec
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make(kernel: FakeKernel, ready: bool = True) -> Reconciler:
    rec = Reconciler(kernel, sources=("local", "bgp"), resync_interval=3600)
    if ready:
        rec.mark_ready("local")
        rec.mark_ready("bgp")
    return rec


async def test_installs_desired_routes() -> None:
    kernel = FakeKernel()
    rec = make(kernel)
    rec.set_routes("local", [A])
    rec.set_routes("bgp", [B])
    async with running(rec):
        await until(lambda: kernel.ours == {A.key: A, B.key: B})
        rec.set_routes("bgp", [])
        await until(lambda: kernel.ours == {A.key: A})


async def test_local_route_beats_learned_route() -> None:
    kernel = FakeKernel()
    rec = make(kernel)
    rec.set_routes("bgp", [B])
    rec.set_routes("local", [B_LOCAL])
    async with running(rec):
        await until(lambda: kernel.ours.get(B.key) == B_LOCAL)
        rec.set_routes("local", [])
        await until(lambda: kernel.ours.get(B.key) == B)


async def test_restores_route_deleted_by_someone_else() -> None:
    kernel = FakeKernel()
    rec = make(kernel)
    rec.set_routes("local", [A])
    async with running(rec):
        await until(lambda: A.key in kernel.ours)
        kernel.external_delete(A.key)
        await until(lambda: A.key in kernel.ours)
        assert rec.stats.restored == 1
        assert kernel.dumps == 1  # restored from the event, not by a full resync


async def test_foreign_route_blocks_ours_until_it_goes(caplog: pytest.LogCaptureFixture) -> None:
    kernel = FakeKernel()
    kernel.external_add_foreign(A.key)
    rec = make(kernel)
    rec.set_routes("local", [A])
    async with running(rec):
        await rec.wait_in_sync()
        assert A.key not in kernel.ours
        assert kernel.foreign[A.key] == {(4, 0)}
        assert "route_conflict" in caplog.text
        kernel.external_delete_foreign(A.key)
        await until(lambda: A.key in kernel.ours)


async def test_stale_routes_survive_until_all_sources_ready() -> None:
    kernel = FakeKernel()
    kernel.ours[STALE.key] = STALE
    rec = make(kernel, ready=False)
    rec.set_routes("local", [A])
    async with running(rec):
        await until(lambda: A.key in kernel.ours)
        rec.mark_ready("local")
        await rec.wait_in_sync()
        assert STALE.key in kernel.ours  # bgp has not spoken yet
        rec.mark_ready("bgp")
        await until(lambda: STALE.key not in kernel.ours)


async def test_a_route_withdrawn_in_this_run_goes_before_every_source_is_ready() -> None:
    """A peer that never sends End-of-RIB (bgp never ready) withdraws a route it announced
    in this run: it goes at once; a previous run's stale route still waits."""
    kernel = FakeKernel()
    kernel.ours[STALE.key] = STALE
    rec = make(kernel, ready=False)
    rec.mark_ready("local")
    async with running(rec):
        rec.update_routes("bgp", upsert=[B])
        await until(lambda: B.key in kernel.ours)
        rec.update_routes("bgp", remove=[B.key])
        await until(lambda: B.key not in kernel.ours)
        await rec.wait_in_sync()
        assert STALE.key in kernel.ours


async def test_lost_events_trigger_full_resync() -> None:
    kernel = FakeKernel()
    rec = make(kernel)
    rec.set_routes("local", [A])
    async with running(rec):
        await until(lambda: A.key in kernel.ours)
        del kernel.ours[A.key]  # changed behind our back, and the event is lost
        kernel.lose_events()
        await until(lambda: A.key in kernel.ours)
        assert kernel.dumps == 2


async def test_failed_route_is_retried_at_resync() -> None:
    kernel = FakeKernel()
    kernel.fail.add(A.key)
    rec = Reconciler(kernel, sources=("local",), resync_interval=0.05)
    rec.mark_ready("local")
    rec.set_routes("local", [A])
    async with running(rec):
        await until(lambda: rec.stats.failures >= 1)
        kernel.fail.clear()
        await until(lambda: A.key in kernel.ours)


async def test_a_refused_route_is_logged_once_per_reason_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 25, finding 5: a route the kernel refuses was logged on every retry, for good."""
    kernel = FakeKernel()
    kernel.fail.add(A.key)
    rec = Reconciler(kernel, sources=("local",), resync_interval=0.02)
    rec.mark_ready("local")
    rec.set_routes("local", [A])
    with caplog.at_level("INFO", logger="routed.fib"):
        async with running(rec):
            await until(lambda: rec.stats.failures >= 5)
            assert rec.failing_by_reason() == {"ENODEV": 1}
            assert rec.failing[A.key][2] >= 5  # every attempt counted
            kernel.fail.clear()
            await until(lambda: A.key in kernel.ours)
            await until(lambda: not rec.failing)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("event=route_failed" in line for line in lines) == 1, lines
    assert sum("event=route_failure_over" in line for line in lines) == 1, lines


async def test_apply_once_touches_only_its_prefixes() -> None:
    kernel = FakeKernel()
    kernel.ours[STALE.key] = STALE
    await apply_once(kernel, [A], {A.key})
    assert kernel.ours == {STALE.key: STALE, A.key: A}
    await apply_once(kernel, [], {A.key})
    assert kernel.ours == {STALE.key: STALE}
