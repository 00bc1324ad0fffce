"""`direct_fanout`: one reflected change packed once and written to every settled client.

ExaBGP injects a change into each matched neighbour's Adj-RIB-Out queue; each peer then gets
a turn of the reactor in which its generator drains the queue, builds an Update, packs it for
its own negotiation and writes it after polling its socket for writability. A reflector's
change goes to every client but one with the same attributes, so at 1,000 clients that was
~150 us of ExaBGP per client per change, 9x BIRD2's time to reach them all.

For a peer that is settled (established, nothing queued or being written, no teardown, no
refresh, the API not asking to see each UPDATE) a change whose next hop is not `self` is now
packed once per distinct negotiation (ASN4, ASNs, message size, families, next-hop and ADD-PATH
capabilities) and written straight to the peer's socket, and recorded in its Adj-RIB-Out cache
as ExaBGP records a change it has queued, so a route refresh, a reload or a resend after the
session comes back sends what was sent. What the kernel does not take at once is kept in front
of anything the connection writes next (its backlog), and the peer gets turns until it is out.
Every other peer takes ExaBGP's path as before (ROUTED_DIRECT_FANOUT=0: every peer does).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

SENDING = "_routed_sending"  # on a Peer: a batch of UPDATEs taken from its queue, not all written
WRITING = "_routed_writing"  # on a Connection: a write under way (the kernel took part of it)
BACKLOG = "_routed_backlog"  # on a Connection: bytes written directly that the kernel left
FINGERPRINT = "_routed_fingerprint"  # on a Protocol: its session's fingerprint()


def fingerprint(negotiated: Any) -> tuple[Any, ...]:
    """What of a session's negotiation decides how an UPDATE is packed for it."""
    return (
        negotiated.asn4,
        int(negotiated.local_as),
        int(negotiated.peer_as),
        negotiated.msg_size,
        tuple(sorted(negotiated.families)),
        tuple(sorted(negotiated.nexthop)),
        tuple(sorted((family, bool(send)) for family, send in negotiated.addpath._send.items())),
        bool(negotiated.aigp),
    )


def settled(peer: Any, established: object, family: object, sent_code: str) -> bool:
    """Whether a change may be written to this peer directly (see the module's docstring)."""
    proto = peer.proto
    if peer.fsm.state != established or proto is None or peer._teardown or peer._neighbor is not None:
        return False
    connection = proto.connection
    if connection is None or connection.io is None or connection.__dict__.get(WRITING):
        return False
    if peer.__dict__.get(SENDING):
        return False
    neighbor = peer.neighbor
    if neighbor.eor or neighbor.messages or neighbor.refresh:
        return False
    outgoing = neighbor.rib.outgoing
    if outgoing._new_nlri or outgoing._refresh_changes:  # OutgoingRIB.pending(), without the call
        return False
    if neighbor.api.get(sent_code, False):
        return False
    return family in neighbor._families  # Neighbor.families() copies the list first


_FINGERPRINTS: dict[tuple[Any, ...], int] = {}  # each distinct fingerprint -> a small number


def session_fingerprint(proto: Any) -> int:
    """A number for the fingerprint of a session's negotiation (sessions negotiated alike get
    the same), computed once per session (connection): a change looks it up once per client,
    and a tuple of tuples is hashed anew each time."""
    key: int | None = proto.__dict__.get(FINGERPRINT)
    if key is None:
        key = proto.__dict__[FINGERPRINT] = _FINGERPRINTS.setdefault(
            fingerprint(proto.negotiated), len(_FINGERPRINTS)
        )
    return key


def sent_already(outgoing: Any, family: Any, index: bytes, change: Any, announce: bool) -> bool:
    """Cache.in_cache(change), with the change's family and index computed once per change,
    not once per peer (in_cache builds a Family object each call)."""
    if not announce or not outgoing.cache:
        return False
    cached = outgoing._seen.get(family, {}).get(index)
    if not cached:
        return False
    attributes, nexthop = change.attributes.index(), change.nlri.nexthop.index()
    return bool(cached.attributes.index() == attributes and cached.nlri.nexthop.index() == nexthop)


def record_sent(outgoing: Any, family: Any, index: bytes, change: Any, announce: bool) -> None:
    """Cache.update_cache(change), likewise."""
    if not outgoing.cache:
        return
    if announce:
        outgoing._seen.setdefault(family, {})[index] = change
    elif family in outgoing._seen:
        outgoing._seen[family].pop(index, None)


def write_now(connection: Any, data: bytes) -> bool:
    """Write to the peer's socket what it takes; keep the rest as its backlog. False if the
    socket is broken (the change then takes ExaBGP's own path, which notices)."""
    backlog = connection.__dict__.get(BACKLOG)
    if backlog:
        connection.__dict__[BACKLOG] = backlog + data
        return True
    try:
        sent = connection.io.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        return False
    if sent < len(data):
        connection.__dict__[BACKLOG] = data[sent:]
    return True


def flush_backlog(connection: Any) -> bool:
    """Write what the kernel left last time; whether some is still left."""
    backlog = connection.__dict__.pop(BACKLOG, b"")
    if not backlog or connection.io is None or connection.__dict__.get(WRITING):
        if backlog and connection.io is not None:
            connection.__dict__[BACKLOG] = backlog
        return bool(backlog) and connection.io is not None
    try:
        sent = connection.io.send(backlog)
    except BlockingIOError:
        sent = 0
    except OSError:
        return False  # the peer's own turn finds the socket broken
    if sent < len(backlog):
        connection.__dict__[BACKLOG] = backlog[sent:]
        return True
    return False


def has_backlog(peer: Any) -> bool:
    proto = peer.proto
    return proto is not None and proto.connection is not None and bool(proto.connection.__dict__.get(BACKLOG))


def direct_fanout(
    configuration_class: Any, reactor_class: Any, peer_class: Any, protocol_class: Any, connection_class: Any
) -> None:
    from exabgp.bgp.fsm import FSM  # type: ignore[import-untyped]
    from exabgp.bgp.message import Action, Message, Update  # type: ignore[import-untyped]
    from exabgp.reactor.peer import ACTION  # type: ignore[import-untyped]

    from bgp.exabgp.manypeers import queued_work  # here: manypeers imports this module

    sent_code = "send-" + Message.CODE.short(Message.CODE.UPDATE)
    reactors: list[Any] = []  # the process's one reactor, for the configuration's injections
    init, inject_change, new_update = (
        reactor_class.__init__,
        configuration_class.inject_change,
        protocol_class.new_update,
    )
    writer, run = connection_class.writer, peer_class.run

    def init_noted(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        reactors[:] = [self]

    def inject_fanned(self: Any, peers: Any, change: Any) -> Any:
        queued_work()  # a write the kernel leaves half done is work for that peer's turn
        if not reactors or change.nlri.nexthop.SELF:  # next hop self: each peer's own attributes
            return inject_change(self, peers, change)
        table = reactors[0]._peers
        family = change.nlri.family().afi_safi()
        index, announce = change.index(), change.nlri.action == Action.ANNOUNCE
        rest, done = set(), False
        packed: dict[int, tuple[bytes, int]] = {}  # a session fingerprint's number -> UPDATEs, count
        written: list[tuple[Any, Any, int]] = []  # (peer, its Adj-RIB-Out, UPDATEs): noted after
        established = FSM.ESTABLISHED
        for name in peers if isinstance(peers, set | frozenset | dict) else dict.fromkeys(peers):
            peer = table.get(name)  # each once: a name twice would be written twice before the books
            if peer is None or not settled(peer, established, family, sent_code):
                rest.add(name)
                continue
            outgoing = peer.neighbor.rib.outgoing
            done = True
            if sent_already(outgoing, family, index, change, announce):
                continue  # ExaBGP's add_to_rib skips it too: sent already
            proto = peer.proto
            key = session_fingerprint(proto)
            wire = packed.get(key)
            if wire is None:
                messages = list(Update([change.nlri], change.attributes).messages(proto.negotiated, True))
                wire = packed[key] = (b"".join(messages), len(messages))
            data, count = wire
            if not write_now(proto.connection, data):  # its turns write what the kernel left
                rest.add(name)
                continue
            written.append((peer, outgoing, count))
        # the books after the last write, not between writes: the last client gets the change
        # sooner, and nothing runs between the two loops that could read them
        for peer, outgoing, count in written:
            record_sent(outgoing, family, index, change, announce)
            peer.stats[sent_code] += count
        if rest:
            done = inject_change(self, rest, change) or done
        return done

    def new_update_marked(self: Any, include_withdraw: bool) -> Iterator[Any]:
        self.peer.__dict__[SENDING] = True
        try:
            yield from new_update(self, include_withdraw)
        finally:
            self.peer.__dict__[SENDING] = False

    def writer_after_backlog(self: Any, data: bytes) -> Iterator[Any]:
        backlog = self.__dict__.pop(BACKLOG, b"")
        self.__dict__[WRITING] = True
        try:
            yield from writer(self, backlog + data)
        finally:
            self.__dict__[WRITING] = False

    def run_flushing(self: Any) -> Any:
        proto = self.proto
        left = proto is not None and proto.connection is not None and flush_backlog(proto.connection)
        action = run(self)
        return ACTION.NOW if left and action == ACTION.LATER else action

    reactor_class.__init__ = init_noted
    configuration_class.inject_change = inject_fanned
    protocol_class.new_update = new_update_marked
    connection_class.writer = writer_after_backlog
    peer_class.run = run_flushing
