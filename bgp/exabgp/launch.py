"""ExaBGP's own entry point with one bug fixed first. Run as `python -m bgp.exabgp.launch server CONF`.

The bug (ExaBGP 5.0, reactor/loop.py): when a peer's connection closes, its socket
stays registered in the reactor's poll set. From then on every poll() returns at once
with POLLNVAL for that descriptor, the loop counts it as spinning, and `_prevent_spin`
sleeps a whole reactor period (speed/100 s) per turn for as long as the peer stays
down. Everything else waits behind that sleep: on a reflector, the withdrawal of a
dead host's routes took two periods (~210 ms at speed 10 instead of ~10 ms), and
every later update from the live peers one period each.

The fix: a descriptor that polls as POLLNVAL is closed, so it is unregistered and not
counted as a spin. API pipes are left to ExaBGP's own handling.

A second change, of behaviour: an API `teardown` of a session that negotiated graceful
restart closed it silently (the same path as a restart), so the peer kept our routes
as stale for our whole restart time. `routed stop --withdraw` needs the opposite: a
teardown asked for over the API now sends its Cease NOTIFICATION, which ends the
peer's helper mode at once (RFC 4724, and RFC 8538's hard reset). A shutdown (SIGTERM)
still closes silently, as a restart should.

The same patch makes a teardown with subcode 3 (Peer De-configured, what a config reload
sends a removed peer) or 1 (max prefixes, after which routed holds the session down) final:
ExaBGP would otherwise connect again at once, and the reload that removes the neighbour a
moment later would close that new session silently, leaving the peer to keep our routes as
stale for our whole restart time.

A third, of behaviour too: ExaBGP backs off between outgoing connection attempts
(1, 2, 3, 4, 5, 7, ... s, growing by 1.2x up to 60 s). Our reflectors are passive (see
config.is_passive), so a reflector that comes back after a minute's outage waited up to
a minute for each client's next attempt. The wait is capped at CONNECT_RETRY_MAX: one SYN
every few seconds to an absent peer costs nothing, and a returning reflector is back in
a few seconds.

A fifth, of speed only: `Neighbor.remove_self` copies a change only when its next hop
is `self` and needs rewriting (docs/upstream/exabgp/0003).

A sixth, of speed only: ExaBGP's ASYNC.run no longer starts an asyncio event loop per
reactor turn for generator callbacks (docs/upstream/exabgp/0004).

A seventh, of speed only (bgp/exabgp/listening.py): the listener polls its sockets before
calling accept() on every reactor turn (docs/upstream/exabgp/0005), takes every waiting
connection, not one a turn, listens with a backlog of 4,096, not 200, and its sockets wake the
reactor's poll: 1,000 clients connecting at once overflowed the accept queue
(docs/upstream/exabgp/0011).

An eighth, of speed only, for many neighbours: API commands naming neighbours are matched
through an index instead of a regular expression per selector per neighbour
(bgp/exabgp/manypeers.py, docs/upstream/exabgp/0006); and the reactor gives an established
peer a turn only when it has something to do, or every tenth of its hold time for its timers
(`quiet_peers`),
the neighbours a command matched are a set, not a list searched per neighbour (`peer_sets`),
and a peer's UPDATEs go out in writes of up to 64 KB, not one send() each (`batched_updates`).
The reactor polls through epoll (`epoll_reactor`, bgp/exabgp/poller.py); a reflected change is
packed once and written straight to every settled client (bgp/exabgp/fanout.py,
ROUTED_DIRECT_FANOUT=0 to leave it to ExaBGP's queues); routed's own `announce attributes`
commands skip ExaBGP's configuration parser (bgp/exabgp/apiparse.py); and a turn runs API
callbacks for CALLBACKS_S at most, so one that writes to 1,000 clients does not hold up the
peers' own turns.

A ninth, of correctness, for neighbours accepted from a range (bgp/exabgp/ranges.py,
docs/upstream/exabgp/0009): each client gets its own RIB and queues (they shared the
range's), API commands reach clients (they reached configured neighbours only), a reload
keeps the clients of unchanged ranges, and a range's MD5 key covers the whole prefix on
the listening socket.

A fourth, of speed only: `hexstring` formatted every byte with str.format (~7 us a route
when messages are forwarded raw, `receive { packets; }`); same text from bytes.hex().

All meant for upstream (docs/upstream/exabgp/); applied only to the ExaBGP versions they
were written against.

A tenth, of latency: sessions ExaBGP opens get TCP_NODELAY as those it accepts do
(`outgoing_without_nagle`).

And one of routed's own (issue 18), bgp/exabgp/rawupdates.py: plain received UPDATEs reach
routed as their bytes.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import socket
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

from bgp.exabgp.apiparse import direct_attributes
from bgp.exabgp.fanout import direct_fanout
from bgp.exabgp.listening import polled_listener, polled_listening_sockets
from bgp.exabgp.manypeers import (
    READY_FDS,
    batched_updates,
    cached_peers,
    indexed_neighbor_match,
    peer_sets,
    quiet_peers,
)
from bgp.exabgp.patched import installed_is_patched
from bgp.exabgp.poller import EpollPoller
from bgp.exabgp.ranges import commands_reach_clients, generated_neighbors, md5_on_ranges, reload_keeps_clients
from bgp.exabgp.rawupdates import raw_updates

CONNECT_RETRY_MAX = 5  # seconds between outgoing attempts, at most
CALLBACKS_S = 0.02  # the longest a reactor turn runs API callbacks before its peers get theirs


def wait_for_io(self: Any, sleeptime: int) -> Iterator[int]:
    """ExaBGP's Reactor._wait_for_io, plus: closed descriptors leave the poll set, and a
    connection to a listening socket ends the wait."""
    spin_prevention = False
    ready = self.__dict__.setdefault(READY_FDS, set())  # for quiet_peers: whose socket woke us
    listening = polled_listening_sockets(self)
    if not self.asynchronous.ready():
        sleeptime = 0  # callbacks left for the next turn (CALLBACKS_S ran out): no sleep first
    try:
        for fd, event in self._poller.poll(sleeptime):
            if fd in listening:
                continue  # a connection waits: the turn this poll ends takes it
            ready.add(fd)
            if event & select.POLLNVAL and fd not in self.processes.fds:
                self._poller.unregister(fd)
                continue
            if event & select.POLLIN or event & select.POLLPRI:
                yield fd
                continue
            if event & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                spin_prevention = True
        if spin_prevention:
            self._prevent_spin()
    except KeyboardInterrupt:
        self._termination("^C received", self.Exit.normal)
        return
    except Exception:
        self._prevent_spin()
        return


SILENT_CLOSE = "graceful restarted negotiated"  # how ExaBGP 5.0 words its silent close
# Cease subcodes (RFC 4486) after which ExaBGP must not connect again by itself: routed
# removes the neighbour (reload) or holds it down (max prefixes) and brings it back itself
MAX_PREFIXES, PEER_DECONFIGURED = 1, 3
FINAL_SUBCODES = (MAX_PREFIXES, PEER_DECONFIGURED)


def epoll_reactor(reactor_class: Any) -> None:
    """The reactor's poll() over every peer's socket on every turn, kept as epoll
    (bgp/exabgp/poller.py: 53 us a turn at 1,000 clients, 0.3 with epoll)."""
    init = reactor_class.__init__

    def init_with_epoll(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._poller = EpollPoller()

    reactor_class.__init__ = init_with_epoll


def hard_teardowns(peer_class: Any) -> None:
    """Make an API teardown send its NOTIFICATION even where graceful restart was negotiated."""
    from exabgp.bgp.message import Notify  # type: ignore[import-untyped]

    teardown, close = peer_class.teardown, peer_class._close

    def teardown_hard(self: Any, code: int, restart: bool = True) -> None:
        self._routed_hard_reset = code
        teardown(self, code, restart and code not in FINAL_SUBCODES)

    def close_or_notify(self: Any, message: str = "", error: str = "") -> Any:
        code = getattr(self, "_routed_hard_reset", None)
        if code is not None and message.startswith(SILENT_CLOSE):
            self._routed_hard_reset = None
            raise Notify(6, code)  # the peer loop sends it, then closes
        return close(self, message, error)

    peer_class.teardown, peer_class._close = teardown_hard, close_or_notify


def reloads_not_dropped(reactor_class: Any) -> None:
    """A reload (SIGUSR1) that found any peer with UPDATEs still queued was dropped, not
    deferred: the signal is re-armed before the check. A peer whose session is down keeps its
    queue until it is up, so fixing its TCP-MD5 password by a reload never took (seen on a
    client of a range); a busy reflector lost reloads the same way. A reload keeps every
    unchanged neighbour's queue (RIB._cache), so nothing needs it empty first
    (docs/upstream/exabgp/0010)."""
    reactor_class._pending_adjribout = lambda self: False


def capped_backoff(delay_class: Any) -> None:
    """Make ExaBGP's reconnect delay grow as before but never past CONNECT_RETRY_MAX."""
    increase = delay_class.increase

    def increase_capped(self: Any) -> None:
        increase(self)
        self._next = min(self._next, CONNECT_RETRY_MAX)

    delay_class.increase = increase_capped


def outgoing_without_nagle(outgoing_class: Any) -> None:
    """TCP_NODELAY on the sessions ExaBGP opens, as on those it accepts (ExaBGP's Outgoing has
    the call commented out). With Nagle on, an UPDATE written while the peer has not yet
    acknowledged our last KEEPALIVE waits for that ACK, which the peer may delay ~40 ms: a
    reflected change late by that much for the clients whose session this side opened."""
    setup = outgoing_class._setup

    def setup_without_nagle(self: Any) -> Any:
        issue = setup(self)
        if issue is None and self.io is not None:
            with contextlib.suppress(OSError):  # as ExaBGP: a socket that refuses it still works
                self.io.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return issue

    setup_without_nagle.__wrapped__ = setup  # type: ignore[attr-defined]
    outgoing_class._setup = setup_without_nagle


def hexstring(value: bytes) -> str:
    """ExaBGP's exabgp.util.hexstring, the same text, without a format call per byte."""
    return "0x" + bytes(value).hex().upper()


def fast_hexstring() -> None:
    import exabgp.reactor.api.response.json as json_response  # type: ignore[import-untyped]
    import exabgp.util  # type: ignore[import-untyped]

    exabgp.util.hexstring = json_response.hexstring = hexstring


def copy_only_for_self(neighbor_class: Any) -> None:
    """Neighbor.remove_self deep-copies every injected change for every neighbour (~150 us
    each, a reflector injects each route into every client but one); copy only to rewrite
    a next hop of `self` (docs/upstream/exabgp/0003)."""
    remove_self = neighbor_class.remove_self

    def remove_self_when_self(self: Any, changes: Any) -> Any:
        if not changes.nlri.nexthop.SELF:
            return changes
        return remove_self(self, changes)

    neighbor_class.remove_self = remove_self_when_self


def loopless_generators(async_class: Any) -> None:
    """ExaBGP's ASYNC.run ran `asyncio.run()` (a new event loop, ~0.2 ms) on every reactor
    turn with work queued, even when every callback is a plain generator, as all of the API
    commands' are. Such a run never awaits, so its coroutine completes on its first step
    (docs/upstream/exabgp/0004)."""
    run = async_class.run

    def run_generators_in_place(self: Any) -> Any:
        if not self._async or any(self._is_coroutine(callback) for _, callback in self._async):
            return run(self)
        # A step at a time, for at most CALLBACKS_S of the turn: a step of a route command
        # reaches every client (bgp.exabgp.fanout), 20 ms at 1,000, and fifty of them in one
        # turn kept the peers' OPENs and keepalives waiting for a second at a time
        deadline, more = time.monotonic() + CALLBACKS_S, False
        self.LIMIT = 1
        for _ in range(async_class.LIMIT):
            steps = self._run_async()
            try:
                steps.send(None)
            except StopIteration as done:
                more = done.value
            else:
                steps.close()  # it awaited: only a coroutine callback can, and those went to run()
                raise RuntimeError("an ExaBGP generator callback awaited")
            if not self._async or time.monotonic() >= deadline:
                break
        return more

    async_class.run = run_generators_in_place


def patch() -> bool:
    """Apply the fixes if this ExaBGP is one they were written for; True if applied."""
    from exabgp.bgp.neighbor import Neighbor  # type: ignore[import-untyped]
    from exabgp.configuration.configuration import _Configuration  # type: ignore[import-untyped]
    from exabgp.reactor.api import API
    from exabgp.reactor.asynchronous import ASYNC  # type: ignore[import-untyped]
    from exabgp.reactor.delay import Delay  # type: ignore[import-untyped]
    from exabgp.reactor.listener import Listener  # type: ignore[import-untyped]
    from exabgp.reactor.loop import Reactor  # type: ignore[import-untyped]
    from exabgp.reactor.network.connection import Connection  # type: ignore[import-untyped]
    from exabgp.reactor.network.outgoing import Outgoing  # type: ignore[import-untyped]
    from exabgp.reactor.peer import Peer  # type: ignore[import-untyped]
    from exabgp.reactor.protocol import Protocol  # type: ignore[import-untyped]

    if not installed_is_patched():
        return False
    Reactor._wait_for_io = wait_for_io
    epoll_reactor(Reactor)
    copy_only_for_self(Neighbor)
    loopless_generators(ASYNC)
    polled_listener(Listener)
    hard_teardowns(Peer)
    capped_backoff(Delay)
    outgoing_without_nagle(Outgoing)
    reloads_not_dropped(Reactor)
    fast_hexstring()
    indexed_neighbor_match()
    quiet_peers(Reactor, Peer, API, ASYNC)
    peer_sets(_Configuration)
    batched_updates(Protocol)
    generated_neighbors(Neighbor, Peer)
    commands_reach_clients(_Configuration)
    reload_keeps_clients(Reactor)
    md5_on_ranges(Listener)
    cached_peers(Reactor)  # after every other patch of Reactor.reload: it forgets around them all
    direct_attributes(API)
    if os.environ.get("ROUTED_DIRECT_FANOUT", "1") != "0":  # 0: every change takes ExaBGP's queues
        direct_fanout(_Configuration, Reactor, Peer, Protocol, Connection)
    if os.environ.get("ROUTED_RAW_UPDATES", "1") != "0":  # 0: ExaBGP decodes every UPDATE, as before
        raw_updates()
    return True


class _AsyncioOnFirstUse(types.ModuleType):
    """Stands for asyncio until ExaBGP first uses one of its names, then becomes it."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        del sys.modules["asyncio"]
        real = importlib.import_module("asyncio")
        self.__dict__.update(vars(real))
        sys.modules["asyncio"] = real
        return getattr(real, name)


def deferred_asyncio() -> None:
    """ExaBGP imports asyncio (and with it ssl, 5.7 MB of a 30 MB process) for ASYNC.run alone,
    which `loopless_generators` replaced: asyncio is loaded only if something uses it (a
    coroutine callback). Part of the idle host's memory budget (issue 30)."""
    if "asyncio" not in sys.modules:
        sys.modules["asyncio"] = _AsyncioOnFirstUse("asyncio")


def main() -> None:
    deferred_asyncio()
    patch()
    from exabgp.application.main import main as exabgp_main  # type: ignore[import-untyped]

    exabgp_main()


if __name__ == "__main__":
    main()
