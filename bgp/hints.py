"""Why a session is not coming up: what `routed status` and the log tell an operator.

TCP-MD5 failures are silent on both sides but for the kernel's counters (read by the node and
injected), which the watcher compares with those when the session went down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from bgp.events import event
from bgp.neighbor import Neighbor

log = logging.getLogger("bgp.speaker")

HINT_AFTER = 20.0  # seconds without a session before `routed status` and the log say why it may be


LOGGED_ONE_BY_ONE = 10  # more sessions than this getting a hint at once: one line for the rest


async def watch_sessions(
    neighbors: Callable[[], Iterable[Neighbor]],
    md5_drops: Callable[[], dict[str, int]],
    interval: float = 5.0,
) -> None:
    while True:
        await asyncio.sleep(interval)
        counters = md5_drops()
        log_hints([n for n in neighbors() if note_hint(n, counters)])


def note_hint(neighbor: Neighbor, counters: dict[str, int]) -> bool:
    """Work out the neighbor's hint from the drop counters now; whether it changed to a new one."""
    if neighbor.up or neighbor.held_down or neighbor.dynamic:
        return False  # a range's client is awaited, never called: its absence is no fault
    if neighbor.md5_baseline is None:
        neighbor.md5_baseline = counters
    drops = {k: v - neighbor.md5_baseline.get(k, 0) for k, v in counters.items()}
    config, now = neighbor.config, neighbor.clock.time()
    hint = establish_hint(config.uses_md5, now - neighbor.unestablished_since, drops, config.ttl_security)
    changed = bool(hint) and hint != neighbor.hint
    neighbor.hint = hint
    return changed


def log_hints(changed: list[Neighbor]) -> None:
    """A line per session with a new hint; past LOGGED_ONE_BY_ONE at once (a reflector of
    hundreds starting, a fabric outage), one line per hint with how many and the first few,
    instead of hundreds of lines saying the same thing."""
    for neighbor in changed[:LOGGED_ONE_BY_ONE]:
        log.warning(
            event(
                "bgp_session_not_establishing",
                peer=neighbor.address,
                down_s=round(neighbor.clock.time() - neighbor.unestablished_since),
                md5="yes" if neighbor.config.uses_md5 else "no",
                hint=neighbor.hint,
            )
        )
    rest: dict[str, list[Neighbor]] = {}
    for neighbor in changed[LOGGED_ONE_BY_ONE:]:
        rest.setdefault(neighbor.hint, []).append(neighbor)
    for hint, group in rest.items():
        log.warning(
            event(
                "bgp_sessions_not_establishing",
                count=len(group),
                peers=",".join(str(n.address) for n in group[:5]) + (",..." if len(group) > 5 else ""),
                hint=hint,
            )
        )


def establish_hint(
    uses_md5: bool, down_for: float, md5_drops: dict[str, int], uses_gtsm: bool = False
) -> str:
    """What to tell an operator about a session that has not come up for `down_for` seconds,
    given how many segments the kernel dropped for MD5 reasons meanwhile (TcpExt counters)."""
    if down_for < HINT_AFTER:
        return ""
    hint = _md5_hint(uses_md5, md5_drops)
    if uses_gtsm:
        hint += (
            "; it also uses TTL security (GTSM): a peer that does not send with TTL 255, or is more "
            "than one hop away, is dropped by the kernel just as silently"
        )
    return hint


def _md5_hint(uses_md5: bool, md5_drops: dict[str, int]) -> str:
    bad = md5_drops.get("TCPMD5Failure", 0) + md5_drops.get("TCPMD5NotFound", 0)
    unexpected = md5_drops.get("TCPMD5Unexpected", 0)
    if uses_md5 and bad:
        return (
            f"not coming up: this host's kernel dropped {bad} segments with a wrong or missing TCP-MD5 "
            "signature meanwhile (TCPMD5Failure/TCPMD5NotFound): check that both sides have the same password"
        )
    if not uses_md5 and unexpected:
        return (
            f"not coming up: this host's kernel dropped {unexpected} segments signed with TCP-MD5 "
            "meanwhile (TCPMD5Unexpected): the peer has a password set and we have none"
        )
    if uses_md5:
        return (
            "not coming up: this session uses TCP-MD5, and a password that differs from the peer's "
            "looks exactly like this (the kernel drops such segments silently); or the peer is down"
        )
    return (
        "not coming up: no answer from the peer; it may be down or unreachable, or expect a TCP-MD5 "
        "password (the kernel drops unsigned segments silently)"
    )
