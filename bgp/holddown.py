"""Max-prefix acted on: a crossing told once, and a peer over a teardown limit held down.

What of an UPDATE is kept is bgp.limits' rule, counted by the Neighbor; this is what follows:
the log lines, and for `teardown` a Cease 6/1 (RFC 4486), its routes gone at once (not kept
as stale), the neighbour out of ExaBGP's config for `restart_after` seconds, then back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from bgp import limits
from bgp.events import event
from bgp.limits import MaxPrefixAction
from bgp.model import IPAddress, RouteUpdate
from bgp.neighbor import Neighbor
from bgp.rib import Rib

log = logging.getLogger("bgp.speaker")

MAX_PREFIXES_SUBCODE = 1  # Cease: Maximum Number of Prefixes Reached (RFC 4486)


class Sessions(Protocol):
    """What hold-down needs of the ExaBGP bridge."""

    def teardown(self, peers: Sequence[IPAddress], subcode: int) -> None: ...

    async def flushed(self, timeout: float) -> None: ...

    def reload_config(self) -> None: ...


async def tear_down(sessions: Sessions, neighbors: Sequence[Neighbor], subcode: int, timeout: float) -> None:
    """Close sessions with a Cease and wait until ExaBGP reports them down (it is out then)."""
    sessions.teardown([n.address for n in neighbors], subcode)
    await sessions.flushed(timeout)
    deadline = time.monotonic() + timeout
    while any(n.up for n in neighbors) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(event("bgp_task_failed", task=task.get_name(), reason=repr(task.exception())))


class ReceiveLimits:
    def __init__(self, rib: Rib, sessions: Sessions, drop_routes: Callable[[Neighbor], int]) -> None:
        self.rib = rib
        self.sessions = sessions
        self.drop_routes = drop_routes  # withdraws a neighbor's routes everywhere; how many
        self._tasks: set[asyncio.Task[Any]] = set()

    def admit(self, neighbor: Neighbor, ev: RouteUpdate) -> tuple[limits.Announcement, ...]:
        limit = neighbor.config.max_prefixes
        if limit is None:
            return ev.announced
        address = neighbor.address
        verdict = neighbor.admit(
            ev.announced, ev.withdrawn, self.rib.holds(address), self.rib.holds_by_family(address)
        )
        if verdict.crossed:
            self._crossed(neighbor, verdict.held)
        elif verdict.cleared:
            log.warning(
                event("bgp_max_prefixes_cleared", peer=neighbor.address, limit=limit.limit, held=verdict.held)
            )
        return verdict.kept

    def _crossed(self, neighbor: Neighbor, held: int) -> None:
        """The peer holds (or would) more than its max_prefixes: say so once, and act."""
        limit = neighbor.config.max_prefixes
        assert limit is not None
        neighbor.over_limit = True
        log.error(
            event(
                "bgp_max_prefixes",
                peer=neighbor.address,
                limit=limit.limit,
                received=held,
                action=limit.action.value,
            )
        )
        if limit.action is MaxPrefixAction.TEARDOWN and not neighbor.held_down:
            neighbor.held_until = float("inf")  # what is still in flight is ignored from now
            task = asyncio.create_task(self._hold_down(neighbor, held), name=f"hold-down-{neighbor.address}")
            task.add_done_callback(_log_failure)
            task.add_done_callback(self._tasks.discard)
            self._tasks.add(task)

    async def _hold_down(self, neighbor: Neighbor, received: int) -> None:
        limit = neighbor.config.max_prefixes
        assert limit is not None
        hold = limit.restart_after
        self.drop_routes(neighbor)
        if neighbor.up:
            await tear_down(self.sessions, [neighbor], MAX_PREFIXES_SUBCODE, timeout=10)
        neighbor.last_error = (  # after the session's own "notification sent" reason
            f"sent {received} prefixes, over its max_prefixes {limit.limit}: closed with Cease 6/1, "
            + (f"held down for {hold}s" if hold else "held down until a reload")
        )
        neighbor.cancel_stale_timer()  # the one its session's end armed meanwhile
        neighbor.hold_down(hold)
        self.sessions.reload_config()
        if hold:
            neighbor.clock.call_later(hold, self.release, neighbor)

    def release(self, neighbor: Neighbor) -> None:
        if neighbor.release():
            log.warning(event("bgp_max_prefixes_released", peer=neighbor.address))
            self.sessions.reload_config()

    def limit_changed(self, neighbor: Neighbor) -> None:
        """A reload changed the peer's max_prefixes: judge what it holds now by the new one."""
        limit, address = neighbor.config.max_prefixes, neighbor.address
        if neighbor.held_down and (limit is None or limit.action is not MaxPrefixAction.TEARDOWN):
            self.release(neighbor)
            return
        held = max(self.rib.holds_by_family(address).values())  # the limit is each family's
        neighbor.over_limit = False
        if limit is None or held <= limit.limit:
            return
        self._crossed(neighbor, held)
        if limit.action is MaxPrefixAction.DROP:
            log.warning(
                event(
                    "bgp_max_prefixes_not_retroactive",
                    peer=address,
                    held=held,
                    fix="its next announcements are dropped; reset its session to keep only the first",
                )
            )

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
