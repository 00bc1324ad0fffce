"""Graceful restart (RFC 4724) decisions, as pure functions. The speaker keeps the timers.

Helper side: what to do with a peer's paths when its session goes down, when it comes
back with or without forwarding state, and when its End-of-RIB arrives.
Restarting side: when our own End-of-RIB may go to a peer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from bgp.model import GracefulRestartCapability, IPAddress

FAMILY_VERSIONS = {"ipv4 unicast": 4, "ipv6 unicast": 6}


class DownAction(StrEnum):
    KEEP_STALE = "keep as stale"  # helper mode: the peer's forwarding state outlives its session
    WITHDRAW = "withdraw"


@dataclass(frozen=True, slots=True)
class DownVerdict:
    action: DownAction
    why: str
    restart_time: int = 0  # how long the stale paths may stay (KEEP_STALE only)


def on_session_down(
    peer_capability: GracefulRestartCapability | None, graceful_locally: bool, notification_received: bool
) -> DownVerdict:
    """RFC 4724 4.2: keep a peer's routes through a restart only if both sides negotiated GR
    and the session ended without a NOTIFICATION from the peer (a TCP reset or close, a hold
    timer expiry seen here, our own ExaBGP dying). A NOTIFICATION is a deliberate goodbye:
    ExaBGP cannot negotiate RFC 8538's N bit, so every NOTIFICATION is a hard reset."""
    if not graceful_locally:
        return DownVerdict(DownAction.WITHDRAW, "graceful restart disabled for this peer")
    if peer_capability is None:
        return DownVerdict(DownAction.WITHDRAW, "peer did not advertise graceful restart")
    if notification_received:
        return DownVerdict(DownAction.WITHDRAW, "peer sent a NOTIFICATION (hard reset)")
    if peer_capability.restart_time == 0:
        return DownVerdict(DownAction.WITHDRAW, "peer advertised a restart time of 0")
    return DownVerdict(
        DownAction.KEEP_STALE, "session lost without NOTIFICATION", peer_capability.restart_time
    )


def versions_without_forwarding(
    capability: GracefulRestartCapability | None, versions: Collection[int] = (4, 6)
) -> set[int]:
    """IP versions whose stale paths must go at once when the peer re-opens (RFC 4724 4.2):
    it no longer advertises GR at all, or it says it did not keep forwarding state."""
    if capability is None:
        return set(versions)
    return {v for v in versions if v not in capability.forwarding}


def eor_due(
    *,
    local_ready: bool,
    reflects: bool,
    target: IPAddress,
    peers: Collection[IPAddress],
    eor_received: Collection[IPAddress],
    deferral_expired: bool,
    restarting: Collection[IPAddress] = (),
) -> bool:
    """May our End-of-RIB go to `target` now?

    Only once our own table is complete: the local workloads are restored and installed.
    A speaker that passes learned routes on (a reflector) also waits for the End-of-RIB of
    every other peer, as those fill the target's table, or for its selection deferral
    timer (RFC 4724 4.1), so a dead peer cannot hold everyone's sweep back for long.
    `restarting`: peers whose OPEN set the Restart State bit and that may wait for ours
    before sending theirs (RFC 4724 4.1 excludes them); waiting for theirs would deadlock
    two reflectors restarted together. The caller leaves clients out of it: a client sends
    its End-of-RIB whatever ours, and after a power event a reflector that did not wait for
    it would tell the other clients to sweep routes it has not received yet.
    """
    if not local_ready:
        return False
    if not reflects or deferral_expired:
        return True
    return all(peer in eor_received for peer in peers if peer != target and peer not in restarting)
