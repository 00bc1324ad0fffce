"""bgp.exabgp.fanout: which peers a change may be written to directly, and the backlog a
partial write leaves in front of anything the connection writes next."""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from typing import Any

from bgp.exabgp.fanout import (
    BACKLOG,
    SENDING,
    WRITING,
    flush_backlog,
    has_backlog,
    record_sent,
    sent_already,
    settled,
    write_now,
)

ESTABLISHED, FAMILY, SENT = "established", ("ipv4", "unicast"), "send-update"


class Connection:
    def __init__(self, io: Any) -> None:
        self.io = io


class Rib:
    def __init__(self) -> None:
        self._new_nlri: dict[Any, Any] = {}
        self._refresh_changes: list[Any] = []


class Neighbor:
    def __init__(self) -> None:
        self.eor: deque[Any] = deque()
        self.messages: deque[Any] = deque()
        self.refresh: deque[Any] = deque()
        self.rib = type("R", (), {"outgoing": Rib()})()
        self.api: dict[str, bool] = {}
        self._families = [FAMILY]


class Peer:
    def __init__(self, io: Any) -> None:
        self.fsm = type("F", (), {"state": ESTABLISHED})()
        self.proto: Any = type("P", (), {"connection": Connection(io)})()
        self._teardown = None
        self._neighbor = None
        self.neighbor = Neighbor()


def test_only_a_settled_peer_is_written_to_directly() -> None:
    a, b = socket.socketpair()
    assert settled(Peer(a), ESTABLISHED, FAMILY, SENT)
    unsettle = [
        lambda p: setattr(p.fsm, "state", "openconfirm"),
        lambda p: setattr(p, "proto", None),
        lambda p: setattr(p, "_teardown", 2),
        lambda p: setattr(p, "_neighbor", object()),
        lambda p: setattr(p.proto.connection, "io", None),
        lambda p: p.proto.connection.__dict__.__setitem__(WRITING, True),  # a write under way
        lambda p: p.__dict__.__setitem__(SENDING, True),  # a batch taken from its queue
        lambda p: p.neighbor.eor.append("ipv4 unicast"),
        lambda p: p.neighbor.messages.append("operational"),
        lambda p: p.neighbor.refresh.append("refresh"),
        lambda p: p.neighbor.rib.outgoing._new_nlri.__setitem__("n", 1),  # older changes first
        lambda p: p.neighbor.rib.outgoing._refresh_changes.append(1),  # a route refresh's
        lambda p: p.neighbor.api.__setitem__(SENT, True),  # the API sees each UPDATE
    ]
    for index, make in enumerate(unsettle):
        peer = Peer(a)
        make(peer)
        assert not settled(peer, ESTABLISHED, FAMILY, SENT), index
    assert not settled(Peer(a), ESTABLISHED, ("ipv6", "unicast"), SENT)  # a family it lacks
    a.close()
    b.close()


def test_what_the_kernel_leaves_goes_first_and_whole() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    connection = Connection(a)
    big = bytes(range(256)) * 4096  # more than the socket takes at once
    assert write_now(connection, big)
    assert connection.__dict__.get(BACKLOG), "the kernel took it all: the test proves nothing"
    assert write_now(connection, b"after")  # behind the backlog, never in front of it
    received = bytearray()
    b.setblocking(False)
    while True:  # the peer reads, the connection's turns write what is left
        drained = False
        while not drained:
            try:
                received += b.recv(1 << 20)
            except BlockingIOError:
                drained = True
        if not flush_backlog(connection) and not connection.__dict__.get(BACKLOG):
            break
    with contextlib.suppress(BlockingIOError):
        received += b.recv(1 << 20)
    assert bytes(received) == big + b"after"
    a.close()
    b.close()


def test_a_broken_socket_hands_the_change_back() -> None:
    a, b = socket.socketpair()
    b.close()
    connection = Connection(a)
    assert not write_now(connection, b"x" * 10)
    assert not connection.__dict__.get(BACKLOG)
    a.close()


def test_a_backlog_waits_while_a_write_is_under_way_and_gives_the_peer_turns() -> None:
    a, b = socket.socketpair()
    peer = Peer(a)
    connection = peer.proto.connection
    connection.__dict__[BACKLOG] = b"left"
    assert has_backlog(peer)
    connection.__dict__[WRITING] = True
    assert flush_backlog(connection)  # kept: the writer under way sends it first
    assert connection.__dict__[BACKLOG] == b"left"
    connection.__dict__[WRITING] = False
    assert not flush_backlog(connection)
    assert b.recv(16) == b"left"
    assert not has_backlog(peer)
    a.close()
    b.close()


def change(prefix: str, length: int, next_hop: str, med: int | None = None, announce: bool = True) -> Any:
    from exabgp.bgp.message import Action  # type: ignore[import-untyped]
    from exabgp.bgp.message.update.attribute import Attributes  # type: ignore[import-untyped]
    from exabgp.bgp.message.update.attribute.med import MED  # type: ignore[import-untyped]
    from exabgp.bgp.message.update.attribute.origin import Origin  # type: ignore[import-untyped]
    from exabgp.bgp.message.update.nlri.cidr import CIDR  # type: ignore[import-untyped]
    from exabgp.bgp.message.update.nlri.inet import INET  # type: ignore[import-untyped]
    from exabgp.protocol.family import AFI, SAFI  # type: ignore[import-untyped]
    from exabgp.protocol.ip import IP  # type: ignore[import-untyped]
    from exabgp.rib.change import Change  # type: ignore[import-untyped]

    nlri = INET(AFI.ipv4, SAFI.unicast, Action.ANNOUNCE if announce else Action.WITHDRAW)
    nlri.cidr = CIDR(IP.pton(prefix), length)
    nlri.nexthop = IP.create(next_hop)
    attributes = Attributes()
    attributes.add(Origin(Origin.IGP))
    if med is not None:
        attributes.add(MED(med))
    return Change(nlri, attributes)


def test_the_adj_rib_out_cache_is_read_and_written_as_exabgp_does() -> None:
    """sent_already/record_sent (the family and index computed once per change) agree with
    ExaBGP's own Cache.in_cache/update_cache, change after change."""
    from exabgp.rib.cache import Cache  # type: ignore[import-untyped]

    families = [("ipv4", "unicast")]
    ours, theirs = Cache(True, families), Cache(True, families)
    sequence = [
        change("10.65.1.0", 26, "10.0.0.11"),
        change("10.65.1.0", 26, "10.0.0.11"),  # the same again: sent already
        change("10.65.1.0", 26, "10.0.0.12"),  # another next hop
        change("10.65.1.0", 26, "10.0.0.12", med=5),  # other attributes
        change("10.65.2.0", 26, "10.0.0.12"),
        change("10.65.1.0", 26, "0.0.0.0", announce=False),  # withdrawn: never "sent already"
        change("10.65.1.0", 26, "10.0.0.12", med=5),  # back after its withdrawal
        change("10.65.9.0", 26, "0.0.0.0", announce=False),  # withdrawal of what was never sent
    ]
    seen_already = []
    for item in sequence:
        family, index = item.nlri.family().afi_safi(), item.index()
        announce = item.nlri.action == type(item.nlri.action).ANNOUNCE
        expected = theirs.in_cache(item)
        assert sent_already(ours, family, index, item, announce) == expected
        seen_already.append(expected)
        theirs.update_cache(item)
        record_sent(ours, family, index, item, announce)
        assert {f: set(v) for f, v in ours._seen.items()} == {f: set(v) for f, v in theirs._seen.items()}
    assert seen_already == [False, True, False, False, False, False, False, False]
    off = Cache(False, families)
    record_sent(off, ("ipv4", "unicast"), sequence[0].index(), sequence[0], True)
    assert not off._seen and not sent_already(
        off, ("ipv4", "unicast"), sequence[0].index(), sequence[0], True
    )


def negotiated(asn4: bool = True, peer_as: int = 64512, families: tuple[Any, ...] = (FAMILY,)) -> Any:
    addpath = type("A", (), {"_send": {FAMILY: False}})()
    fields = {"asn4": asn4, "local_as": 64512, "peer_as": peer_as, "msg_size": 4096, "aigp": False}
    return type("N", (), {**fields, "families": list(families), "nexthop": [], "addpath": addpath})()


def test_sessions_negotiated_alike_share_a_packing_and_others_do_not() -> None:
    from bgp.exabgp.fanout import session_fingerprint

    def proto(negotiation: Any) -> Any:
        return type("P", (), {"negotiated": negotiation})()

    alike = [proto(negotiated()), proto(negotiated())]
    unlike = [proto(negotiated(asn4=False)), proto(negotiated(peer_as=65001)), proto(negotiated(families=()))]
    numbers = [session_fingerprint(p) for p in alike + unlike]
    assert numbers[0] == numbers[1]
    assert len(set(numbers[1:])) == 4  # each different negotiation packs apart
    first = alike[0]
    first.negotiated = negotiated(asn4=False)  # read once per session: a new one is a new proto
    assert session_fingerprint(first) == numbers[0]
