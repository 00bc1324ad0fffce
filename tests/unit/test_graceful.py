"""Graceful restart as pure logic: the freshness rule alone, stale paths in the RIB, the
helper's verdicts, when our End-of-RIB may go, GR capabilities as ExaBGP prints them, drain."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_network

from bgp import graceful
from bgp.decision import Reason, by_freshness, select
from bgp.exabgp import commands
from bgp.exabgp.messages import parse_line
from bgp.model import (
    GRACEFUL_SHUTDOWN,
    Attributes,
    GracefulRestartCapability,
    Path,
    Peer,
    PeerOpen,
    Staleness,
)
from bgp.policy import ImportPolicy
from bgp.reflection import LocalSide, Role, local_export
from bgp.rib import Rib
from routed.views import human_duration, status_text

P1 = ip_network("10.65.2.1/32")
P2 = ip_network("10.65.2.2/32")
P6 = ip_network("fd00:65::1/128")
B = Peer(ip_address("10.0.0.2"), 64512, 64512, IPv4Address("10.0.0.2"))
C = Peer(ip_address("10.0.0.3"), 64512, 64512, IPv4Address("10.0.0.3"))
POLICY = ImportPolicy(
    pools=(ip_network("10.65.0.0/16"), ip_network("fd00:65::/48")),
    router_id=IPv4Address("10.0.0.1"),
    local_asn=64512,
    own_addresses=frozenset({ip_address("10.0.0.1")}),
)


def attrs(nh: str, **kw: object) -> Attributes:
    return Attributes(next_hop=ip_address(nh), **kw)  # type: ignore[arg-type]


# --- best path: fresh over stale, a rule of its own ---------------------------------


def test_freshness_rule_alone() -> None:
    fresh = Path(P1, C, attrs("10.0.0.3"))
    stale = Path(P1, B, attrs("10.0.0.2"), Staleness.STALE)
    long_lived = Path(P1, B, attrs("10.0.0.2"), Staleness.LONG_LIVED)
    assert by_freshness([stale, fresh]) == [fresh]
    assert by_freshness([long_lived, stale]) == [stale]
    assert by_freshness([stale, long_lived, stale]) == [stale, stale]


def test_fresh_beats_stale_whatever_the_attributes() -> None:
    # the stale path would win every other rule: higher local pref, lower router id
    stale = Path(P1, B, attrs("10.0.0.2", local_pref=500), Staleness.STALE)
    fresh = Path(P1, C, attrs("10.0.0.3", local_pref=100))
    selection = select([stale, fresh], max_paths=4)
    assert selection is not None and selection.best == fresh and selection.reason is Reason.FRESHNESS
    assert selection.multipath == (fresh,)  # never load-shared with a stale path


def test_graceful_shutdown_community_lowers_local_pref() -> None:
    draining = Path(P1, B, attrs("10.0.0.2", local_pref=200, communities=(GRACEFUL_SHUTDOWN,)))
    normal = Path(P1, C, attrs("10.0.0.3", local_pref=100))
    selection = select([draining, normal])
    assert selection is not None and selection.best == normal and selection.reason is Reason.LOCAL_PREF


# --- the RIB: staleness is data -------------------------------------------------------


def test_stale_paths_stay_until_swept_and_lose_to_fresh_ones() -> None:
    rib = Rib(POLICY, max_paths=1)
    rib.update(B, [(P1, attrs("10.0.0.2")), (P2, attrs("10.0.0.2")), (P6, attrs("fd00::2"))])
    rib.update(C, [(P1, attrs("10.0.0.3"))])
    assert rib.selection(P1).best.peer == B  # type: ignore[union-attr]  # lower router id
    changes = rib.mark_stale(B.address)
    assert rib.stale_count(B.address) == 3 and rib.stale_count() == 3
    assert changes[P1].best.peer == C  # type: ignore[union-attr]  # fresh wins now
    assert changes[P2].best.stale is Staleness.STALE  # type: ignore[union-attr]  # kept, still forwarding
    assert rib.mark_stale(B.address) == {}  # idempotent
    # the new session vouches for P2 again: fresh
    changes = rib.update(B, [(P2, attrs("10.0.0.2"))]).changes
    assert changes[P2].best.stale is Staleness.FRESH  # type: ignore[union-attr]
    assert rib.stale_count(B.address) == 2
    # End-of-RIB for IPv4 sweeps the IPv4 paths it did not re-announce, not IPv6
    changes = rib.sweep_stale(B.address, 4)
    assert changes == {P1: rib.selection(P1)} and rib.selection(P1).best.peer == C  # type: ignore[union-attr]
    assert rib.stale_count(B.address) == 1 and rib.selection(P6) is not None
    assert rib.sweep_stale(B.address) == {P6: None}
    assert rib.stale_count() == 0 and rib.stale_peers() == set()


def test_withdraw_and_peer_down_clear_staleness() -> None:
    rib = Rib(POLICY)
    rib.update(B, [(P1, attrs("10.0.0.2")), (P2, attrs("10.0.0.2"))])
    rib.mark_stale(B.address)
    rib.update(B, withdrawn=[P1])
    assert rib.stale_count(B.address) == 1 and rib.selection(P1) is None
    assert rib.peer_down(B.address) == {P2: None}
    assert rib.stale_count() == 0


def test_long_lived_level_only_ever_degrades() -> None:
    rib = Rib(POLICY)
    rib.update(B, [(P1, attrs("10.0.0.2"))])
    rib.mark_stale(B.address, Staleness.LONG_LIVED)
    assert rib.mark_stale(B.address, Staleness.STALE) == {}
    assert rib.selection(P1).best.stale is Staleness.LONG_LIVED  # type: ignore[union-attr]


# --- helper verdicts and the restarting side ------------------------------------------

CAP = GracefulRestartCapability(restart_time=120, restarted=False, forwarding=frozenset({4, 6}))


def test_helper_keeps_routes_only_without_notification_and_with_both_sides_gr() -> None:
    keep = graceful.on_session_down(CAP, graceful_locally=True, notification_received=False)
    assert keep.action is graceful.DownAction.KEEP_STALE and keep.restart_time == 120
    for verdict in (
        graceful.on_session_down(CAP, graceful_locally=True, notification_received=True),
        graceful.on_session_down(None, graceful_locally=True, notification_received=False),
        graceful.on_session_down(CAP, graceful_locally=False, notification_received=False),
        graceful.on_session_down(
            GracefulRestartCapability(0, False, frozenset({4})),
            graceful_locally=True,
            notification_received=False,
        ),
    ):
        assert verdict.action is graceful.DownAction.WITHDRAW, verdict


def test_peer_back_without_forwarding_state_loses_its_stale_routes() -> None:
    assert graceful.versions_without_forwarding(CAP) == set()
    assert graceful.versions_without_forwarding(GracefulRestartCapability(120, True, frozenset({4}))) == {6}
    assert graceful.versions_without_forwarding(None) == {4, 6}


def test_end_of_rib_waits_for_our_table_and_on_a_reflector_for_the_others() -> None:
    a, b, c = ip_address("10.0.0.11"), ip_address("10.0.0.12"), ip_address("10.0.0.13")
    peers = [a, b, c]
    due = dict(peers=peers, deferral_expired=False)
    assert not graceful.eor_due(local_ready=False, reflects=False, target=a, eor_received=[], **due)  # type: ignore[arg-type]
    assert graceful.eor_due(local_ready=True, reflects=False, target=a, eor_received=[], **due)  # type: ignore[arg-type]
    # a reflector: a's table is complete when b and c have sent theirs (a's own does not matter)
    assert not graceful.eor_due(local_ready=True, reflects=True, target=a, eor_received=[b], **due)  # type: ignore[arg-type]
    assert graceful.eor_due(local_ready=True, reflects=True, target=a, eor_received=[b, c], **due)  # type: ignore[arg-type]
    assert graceful.eor_due(
        local_ready=True, reflects=True, target=a, peers=peers, eor_received=[], deferral_expired=True
    )
    # c restarted too (Restart State bit): it waits for ours, so we do not wait for its
    assert graceful.eor_due(
        local_ready=True,
        reflects=True,
        target=a,
        peers=peers,
        eor_received=[b],
        deferral_expired=False,
        restarting=[c],
    )


# --- the ExaBGP edge ---------------------------------------------------------------------

HEAD = (
    '{ "exabgp": "5.0.0", "time": 1.0, "host" : "vm", "pid" : 1, "ppid" : 1, "counter": 1, "type": "open", '
)
NEIGHBOR = '"neighbor": { "address": { "local": "10.0.0.2", "peer": "10.0.0.1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "10.0.0.2" '  # noqa: E501
# capabilities exactly as ExaBGP 5.0.15's JSON encoder prints them (its labels of the two bits are swapped)
CAPS = (
    '"multiprotocol": { "name": "multiprotocol", "families": [ "ipv4/unicast", "ipv6/unicast" ] }, '
    '"graceful-restart": { "name": "graceful restart", "time": 90, "address-family-flags": '
    '{ "ipv4/unicast": [ "restart" ] , "ipv6/unicast": [ ] }, "restart-flags": [ "forwarding" ]  }'
)


def open_line(caps: str) -> str:
    return (
        HEAD
        + NEIGHBOR
        + ', "direction": "receive", "open": { "version": 4, "asn": 64512, "hold_time": 90, "router_id": "10.0.0.1", '
        + f'"capabilities": {{ {caps} }} }} }} }}'
    )


def test_open_with_graceful_restart_capability() -> None:
    ev = parse_line(open_line(CAPS))
    assert isinstance(ev, PeerOpen)
    assert ev.graceful_restart == GracefulRestartCapability(90, restarted=True, forwarding=frozenset({4}))
    assert ev.families == frozenset({"ipv4 unicast", "ipv6 unicast"})
    bare = parse_line(open_line(""))
    assert isinstance(bare, PeerOpen) and bare.graceful_restart is None
    assert bare.families == frozenset({"ipv4 unicast"})


def test_end_of_rib_and_teardown_commands() -> None:
    peers = [ip_address("10.0.0.2"), ip_address("10.0.0.3")]
    assert commands.end_of_rib(peers, "ipv4 unicast") == (
        "neighbor 10.0.0.2 , neighbor 10.0.0.3 announce eor ipv4 unicast"
    )
    assert commands.teardown(peers[:1]) == "neighbor 10.0.0.2 teardown 2"


def test_drain_marks_our_routes_and_lowers_ibgp_preference() -> None:
    me = LocalSide(router_id=IPv4Address("10.0.0.1"), asn=64512, cluster_id=None, communities=((64512, 1),))
    assert local_export(me, Role.NONCLIENT) == commands.Export(communities=((64512, 1),))
    draining = LocalSide(me.router_id, me.asn, None, communities=((64512, 1),), draining=True)
    assert local_export(draining, Role.NONCLIENT) == commands.Export(
        local_pref=0, communities=((64512, 1), GRACEFUL_SHUTDOWN)
    )
    assert local_export(draining, Role.EBGP).local_pref is None  # no local pref across ASes


# --- what people read ------------------------------------------------------------------------


def test_status_text_shows_graceful_restart_per_peer() -> None:
    peer = {
        "address": "10.0.0.1",
        "description": "rr1",
        "kind": "reflector",
        "asn": 64512,
        "state": "idle",
        "since": 1000.0 - 192,
        "received": 4,
        "accepted": 4,
        "announced": 2,
        "last_error": "",
        "graceful_restart": {
            "local": True,
            "negotiated": True,
            "helper_active": True,
            "stale": 4,
            "timer": "restart time",
            "timer_left_s": 97.2,
        },
    }
    status = {
        "node": "h1",
        "role": "node",
        "router_id": "10.0.0.11",
        "asn": 64512,
        "started": 1000.0 - 3700,
        "fib": {"added": 6},
        "bgp": {
            "exabgp": {"pid": 7, "restarts": 1},
            "ready": True,
            "draining": True,
            "stale": 4,
            "peers": [peer],
        },
    }
    text = status_text(status, now=1000.0)
    assert "up 1h01m" in text and "DRAINING" in text and "stale routes 4" in text
    row = next(line for line in text.splitlines() if line.startswith("10.0.0.1"))
    assert "3m12s" in row and "helping its restart, 97s left" in row and " yes " in row
    assert human_duration(5) == "5s" and human_duration(90061) == "1d01h"


def test_status_text_says_headless() -> None:
    status = {
        "node": "h2",
        "role": "node",
        "fib": {},
        "bgp": {
            "exabgp": {"pid": 7, "restarts": 0},
            "ready": True,
            "stale": 6,
            "headless_since": 1000.0 - 125,
            "peers": [
                {
                    "address": "10.0.0.1",
                    "kind": "reflector",
                    "asn": 64512,
                    "state": "idle",
                    "since": 1000.0 - 125,
                    "received": 3,
                    "graceful_restart": {
                        "local": True,
                        "negotiated": True,
                        "stale": 3,
                        "timer": "long-lived stale time",
                        "timer_left_s": 86295.0,
                    },
                }
            ],
        },
    }
    text = status_text(status, now=1000.0)
    assert "HEADLESS since" in text and "(2m05s), 6 stale routes" in text
    assert "long-lived stale, 23h58m left" in text
