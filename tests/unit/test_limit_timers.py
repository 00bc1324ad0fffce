"""Max-prefix actions and hold-down on a fake clock: warn, drop, and teardown with its Cease,
its routes gone, the neighbour out of ExaBGP's config, and back after `restart_after`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bgp.config import ReceiveLimit
from bgp.limits import MaxPrefixAction
from tests.support.bgpconfig import neighbor, speaker
from tests.support.speaker import Harness

RR, H2 = "10.0.0.1", "10.0.0.12"
PREFIXES = [f"10.65.2.{i}/32" for i in range(1, 6)]


def limited(tmp_path: Path, action: MaxPrefixAction, restart_after: int = 60) -> Harness:
    limit = ReceiveLimit(3, action, restart_after)
    h = Harness(speaker(neighbor(RR), neighbor(H2, "mesh", max_prefixes=limit)), tmp_path)
    h.feed(h.opened(H2), h.up(H2))
    return h


def peer_status(h: Harness) -> dict[str, object]:
    (status,) = [p for p in h.speaker.status()["peers"] if p["address"] == H2]
    return status


def test_warn_keeps_everything_and_says_so_once(tmp_path: Path) -> None:
    h = limited(tmp_path, MaxPrefixAction.WARN)
    h.feed(h.routes(H2, *PREFIXES[:4]), h.routes(H2, PREFIXES[4]))
    assert h.installed() == set(PREFIXES)
    assert peer_status(h)["max_prefixes"] == {
        "limit": 3,
        "action": "warn",
        "over": True,
        "held_down_until": None,
    }
    h.feed(h.routes(H2, *PREFIXES[:2]))  # (re-announcing is no news)
    assert peer_status(h)["rejections"] == {}


def test_drop_keeps_the_first_and_counts_the_rest(tmp_path: Path) -> None:
    h = limited(tmp_path, MaxPrefixAction.DROP)
    h.feed(h.routes(H2, *PREFIXES))
    assert h.installed() == set(PREFIXES[:3])
    assert peer_status(h)["rejections"] == {"max prefixes": 2}
    h.feed(h.routes(H2, PREFIXES[0]))  # an update of what it holds is always taken
    assert peer_status(h)["rejections"] == {"max prefixes": 2}


async def test_teardown_holds_the_peer_down_for_restart_after_then_lets_it_back(tmp_path: Path) -> None:
    h = limited(tmp_path, MaxPrefixAction.TEARDOWN, restart_after=60)
    h.feed(h.routes(H2, *PREFIXES[:2]))
    sent: list[str] = []

    async def exabgp() -> None:  # takes our commands and closes the session we tear down
        while True:
            lines = h.sent()
            sent.extend(lines)
            if any(line.startswith(f"neighbor {H2} teardown 1") for line in lines):
                h.feed(h.down(H2, "notification sent 6/1"))
            await asyncio.sleep(0.01)

    task = asyncio.create_task(exabgp())
    try:
        h.feed(h.routes(H2, *PREFIXES[2:]))
        for _ in range(500):
            if "held down for 60s" in str(peer_status(h)["last_error"]):
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert h.installed() == set()  # gone at once, not kept as stale
    assert f"neighbor {H2} teardown 1" in sent
    assert peer_status(h)["max_prefixes"]["held_down_until"] == h.clock.now + 60  # type: ignore[index]
    assert f"neighbor {H2} " not in h.config_file.read_text()  # out of ExaBGP's config
    h.feed(h.routes(H2, PREFIXES[0]))  # still in flight when it went: ignored
    assert h.installed() == set()
    h.clock.advance(59)
    assert peer_status(h)["max_prefixes"]["held_down_until"] is not None  # type: ignore[index]
    h.clock.advance(1)
    assert peer_status(h)["max_prefixes"]["held_down_until"] is None  # type: ignore[index]
    assert f"neighbor {H2} {{" in h.config_file.read_text()  # back: ExaBGP opens it again
    h.feed(h.opened(H2), h.up(H2), h.routes(H2, PREFIXES[0]))
    assert h.installed() == {PREFIXES[0]}


def test_the_limit_is_each_familys_on_a_session_carrying_both(tmp_path: Path) -> None:
    """An IPv6-only fabric's session carries IPv4 too (RFC 8950): a limit of 3 lets in 3 of each
    family, as BIRD's receive limit per channel and FRR's maximum-prefix per address family."""
    from ipaddress import ip_address, ip_network

    from bgp.config import NeighborConfig, PeerKind
    from tests.support.bgpconfig import ASN

    peer = "fd00::12"
    config = NeighborConfig(
        address=ip_address(peer),
        asn=ASN,
        kind=PeerKind.MESH,
        max_prefixes=ReceiveLimit(3, MaxPrefixAction.DROP),
        extended_next_hop=True,
    )
    pools = (ip_network("10.65.0.0/16"), ip_network("fd00:65::/48"))
    h = Harness(speaker(config, me="10.0.0.11", pools=pools), tmp_path)
    h.feed(h.up(peer))
    v4 = [f"10.65.2.{i}/32" for i in range(1, 5)]
    v6 = [f"fd00:65:0:2::{i}/128" for i in range(1, 5)]
    h.feed(h.routes(peer, *v4, next_hop=peer), h.routes(peer, *v6))
    assert h.installed() == set(v4[:3]) | set(v6[:3])
    (status,) = h.speaker.status()["peers"]
    assert status["rejections"] == {"max prefixes": 2}
    assert h.speaker.rib.holds_by_family(ip_address(peer)) == {4: 3, 6: 3}
    h.feed(Harness.withdrawn(peer, v6[0]))
    assert h.speaker.rib.holds_by_family(ip_address(peer)) == {4: 3, 6: 2}
