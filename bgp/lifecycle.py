"""The speaker's lifecycle: start, decommission, and a reloaded config taken while running.

Functions over the Speaker (bgp.speaker), which stays the dispatcher of events; these are the
few operations that wait (for the fabric address, for ExaBGP to flush and close sessions).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from bgp.clock import Clock
from bgp.config import Reconfiguration, SpeakerConfig
from bgp.dynamic import DynamicPeers
from bgp.events import event
from bgp.exabgp.bridge import ExaBgpBridge
from bgp.exabgp.config import session_settings
from bgp.helper import GracefulHelper
from bgp.hints import watch_sessions
from bgp.holddown import ReceiveLimits, tear_down
from bgp.model import IPAddress, IPNetwork
from bgp.neighbor import Neighbor
from bgp.policy import ImportPolicy
from bgp.reflection import LocalSide
from bgp.reports import RouteReports
from bgp.restart import RestartCoordinator
from bgp.rib import Changes, Rib


class Running(Protocol):
    """The speaker as these operations see it (bgp.speaker.Speaker)."""

    cfg: SpeakerConfig
    clock: Clock
    me: LocalSide
    rib: Rib
    neighbors: dict[IPAddress, Neighbor]
    exabgp: ExaBgpBridge
    helper: GracefulHelper
    restart: RestartCoordinator
    limits: ReceiveLimits
    reports: RouteReports
    dynamic: DynamicPeers
    withdrawing: bool
    has_peers: asyncio.Event

    def refresh(self, prefixes: Iterable[IPNetwork]) -> None: ...

    def program(self, changes: Changes, also: Iterable[IPNetwork] = ()) -> None: ...

    def drop_routes(self, neighbor: Neighbor) -> int: ...

    def policy(self) -> ImportPolicy: ...

    def every_prefix(self) -> set[IPNetwork]: ...

    def learn_fabric_subnets(self, subnets: tuple[IPNetwork, ...]) -> None: ...


log = logging.getLogger("bgp.speaker")


async def run(
    speaker: Running,
    fabric: Callable[[], Awaitable[tuple[IPNetwork, ...]]],
    md5_drops: Callable[[], dict[str, int]],
) -> None:
    speaker.dynamic.restore()  # a range's clients of the last run: awaited like the others
    speaker.restart.start()
    # nothing to speak to, no ExaBGP: until a reload or the node registry gives a peer
    await speaker.has_peers.wait()
    watcher = asyncio.create_task(watch_sessions(speaker.neighbors.values, md5_drops), name="bgp-watch")
    speaker.refresh(speaker.cfg.pools)  # aggregates for peers that get `export: aggregate`
    try:
        # ExaBGP cannot listen on an address the host does not have yet (a node still booting)
        speaker.learn_fabric_subnets(await fabric())
        await speaker.exabgp.run()
    finally:
        speaker.restart.stop()
        speaker.dynamic.stop()
        speaker.limits.cancel()
        watcher.cancel()


async def withdraw_and_stop(speaker: Running, timeout: float) -> int:
    """Decommission: withdraw everything we announced, close every session with a Cease
    (peers drop our routes at once, not after a restart time), then stop ExaBGP."""
    neighbors = speaker.neighbors.values()
    withdrawn = sum(len(n.adj_rib_out) for n in neighbors)
    speaker.withdrawing = True
    speaker.refresh({prefix for n in neighbors for prefix in n.adj_rib_out})
    await speaker.exabgp.flushed(timeout)
    await asyncio.sleep(0.2)  # ExaBGP answers when it has queued an UPDATE, sends it a turn later
    up = [n for n in neighbors if n.up]
    if up:
        await tear_down(speaker.exabgp, up, 2, timeout)
    log.warning(event("bgp_withdrawn_for_stop", routes=withdrawn, peers_notified=len(up)))
    await speaker.exabgp.stop()
    return withdrawn


async def reconfigure(speaker: Running, cfg: SpeakerConfig, change: Reconfiguration, timeout: float) -> None:
    """Take a reloaded config: only what changed moves (the node's reload plan says what).

    Removed peers get a Cease (subcode 3, de-configured) so they drop our routes at once;
    ExaBGP then reloads its own config (SIGUSR1), which starts added sessions and leaves
    every unchanged one alone. An added peer is sent its routes once ExaBGP reports it.
    """
    configs = {n.address: n for n in cfg.neighbors}
    removed = [n for a, n in speaker.neighbors.items() if a not in configs and not n.dynamic]
    old = speaker.cfg
    clients_gone = speaker.dynamic.reconfigure(
        cfg, lambda was, now: session_settings(old, was) == session_settings(cfg, now)
    )
    if up := [n for n in (*removed, *clients_gone) if n.up]:
        await tear_down(speaker.exabgp, up, 3, timeout)
    for neighbor in removed:
        speaker.drop_routes(neighbor)
        neighbor.held_until = None  # a hold-down's end finds nothing to release
        del speaker.neighbors[neighbor.address]
    for neighbor in clients_gone:
        speaker.dynamic.forget(neighbor)  # one that comes back is a client of the new settings
    speaker.cfg = speaker.restart.cfg = cfg
    speaker.helper.timers, speaker.rib.max_paths = cfg.timers, cfg.max_paths
    for address, config in configs.items():
        neighbor = speaker.neighbors.setdefault(address, Neighbor(config, speaker.clock, pending=True))
        limit_changed = neighbor.config.max_prefixes != config.max_prefixes
        neighbor.config = config  # descriptions, export modes and limits too
        if limit_changed:
            speaker.limits.limit_changed(neighbor)
    if change.policy_changed:
        changes: Changes = {}
        speaker.reports.merge(changes, speaker.rib.set_policy(speaker.policy()), speaker.neighbors)
        speaker.program(changes)
    speaker.me = cfg.local_side(draining=speaker.me.draining)
    if change.export_changed:
        speaker.refresh(speaker.every_prefix())
    if change.sessions_changed or removed or clients_gone:
        speaker.exabgp.reload_config()
    if cfg.neighbors or cfg.ranges:
        speaker.has_peers.set()
