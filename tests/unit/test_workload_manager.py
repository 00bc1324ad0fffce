"""WorkloadManager's locking: an API add that arrives while the daemon restores its workloads.

The store's lock is an flock held across awaits (veth set-up); a second task of the same
process that took it without waiting its turn blocked the whole event loop on flock, for
good (seen in CI as a daemon that never answered `workload.add` during start-up). The
kernel side (attach) is replaced by an await that yields, which is all the race needs.
"""

from __future__ import annotations

import asyncio
import threading
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from routed.config import parse_config
from routed.dataplane.workload import Attached, WorkloadSpec
from routed.workloads import manager as manager_module
from routed.workloads.manager import WorkloadManager
from routed.workloads.store import WorkloadStore
from tests.support.nodes import node_yaml

CONFIG = node_yaml("mesh: full", "mesh_nodes: [10.0.0.11, 10.0.0.12]")


async def slow_attach(
    spec: WorkloadSpec, restoring: bool = False, mtu: int | None = None, mtu_of: str | None = None
) -> Attached:
    # a veth being made: the event loop runs other tasks meanwhile. The new workload's takes
    # longer, so restore finishes its own while the add still holds the store's lock.
    await asyncio.sleep(0.01 if restoring else 0.3)
    return Attached("02:00:00:00:00:01", mtu)


def run_with_deadline(scenario: Any, seconds: float = 10.0) -> Any:
    """Run the scenario in its own thread: a blocked event loop shows up as a timeout here
    instead of hanging the test run."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = asyncio.run(scenario())
        except BaseException as exc:  # reported to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the event loop blocked: a task took the store's lock out of turn"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


@pytest.mark.parametrize("stored_before", [1, 3])
def test_an_add_during_restore_finishes_and_both_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored_before: int
) -> None:
    monkeypatch.setattr(manager_module, "attach", slow_attach)
    cfg = parse_config(CONFIG, "h1.yaml")
    store = WorkloadStore(tmp_path)
    with store.locked():
        store.save(
            {
                f"old{i}": WorkloadSpec(f"old{i}", f"ns-old{i}", (ip_address(f"10.65.0.{10 + i}"),))
                for i in range(stored_before)
            }
        )
    routes_seen: list[int] = []
    workloads = WorkloadManager(cfg, store, on_change=lambda routes: routes_seen.append(len(routes)))

    async def scenario() -> tuple[list[str], WorkloadSpec]:
        restoring = asyncio.create_task(workloads.restore())
        await asyncio.sleep(0)  # restore has begun: it is attaching the stored workloads
        added = await workloads.add("web", "ns-web", [ip_address("10.65.1.7")])
        return await restoring, added

    failed, added = run_with_deadline(scenario)

    assert failed == []
    assert added.ips == (ip_address("10.65.1.7"),)
    assert [w.id for w in workloads.current()] == sorted(["web", *(f"old{i}" for i in range(stored_before))])
    with store.locked():
        assert set(store.load()) == {w.id for w in workloads.current()}
    assert routes_seen[-1] == stored_before + 1
