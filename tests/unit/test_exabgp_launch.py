"""The ExaBGP reactor fix in bgp.exabgp.launch, on a real poll set (no ExaBGP process)."""

from __future__ import annotations

import asyncio
import copy
import select
import socket
import time
from typing import Any

import pytest
from exabgp.reactor.asynchronous import ASYNC
from exabgp.reactor.loop import Reactor

from bgp.exabgp import launch, listening


class FakeReactor:
    """The attributes Reactor._wait_for_io uses; counts the sleeps of spin prevention."""

    def __init__(self, api_fds: list[int] | None = None) -> None:
        self._poller = select.poll()
        self.listener = type("Listener", (), {"_sockets": {}})()
        self.processes = type("Processes", (), {"fds": api_fds or []})()
        self.spin_sleeps = 0
        self.asynchronous = ASYNC()

    def _prevent_spin(self) -> None:
        self.spin_sleeps += 1

    def register(self, fd: int) -> None:
        mask = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLNVAL | select.POLLERR
        self._poller.register(fd, mask)


def closed_peer(reactor: FakeReactor) -> socket.socket:
    """A live socket registered, plus one whose descriptor was closed while registered."""
    live, other = socket.socketpair()
    dead, _ = socket.socketpair()
    reactor.register(live.fileno())
    reactor.register(dead.fileno())
    dead.close()
    other.send(b"x")
    return live


def test_closed_descriptor_is_dropped_without_spin_sleep() -> None:
    reactor = FakeReactor()
    live = closed_peer(reactor)
    assert list(launch.wait_for_io(reactor, 0)) == [live.fileno()]
    assert reactor.spin_sleeps == 0
    # the closed descriptor is gone from the poll set: only the live socket answers now
    assert [fd for fd, _ in reactor._poller.poll(0)] == [live.fileno()]


def test_exabgp_unpatched_sleeps_on_every_turn() -> None:
    """The bug itself, so the fix stays needed only while it exists."""
    reactor = FakeReactor()
    closed_peer(reactor)
    for _ in range(3):
        list(Reactor._wait_for_io(reactor, 0))  # type: ignore[arg-type]
    assert reactor.spin_sleeps == 3


def test_no_sleep_while_callbacks_wait_for_the_next_turn() -> None:
    reactor = FakeReactor()
    reactor.asynchronous._async.append(("api", iter(())))  # a callback queued for the next turn
    started = time.monotonic()
    assert list(launch.wait_for_io(reactor, 2000)) == []
    assert time.monotonic() - started < 1.0  # not the 2 s a turn without callbacks may sleep


def test_api_pipes_are_left_to_exabgp() -> None:
    dead, _ = socket.socketpair()
    fd = dead.fileno()
    reactor = FakeReactor(api_fds=[fd])
    reactor.register(fd)
    dead.close()
    assert list(launch.wait_for_io(reactor, 0)) == []
    assert reactor.spin_sleeps == 1 and [f for f, _ in reactor._poller.poll(0)] == [fd]


def test_applies_only_to_the_versions_it_was_written_for(monkeypatch: Any) -> None:
    import exabgp.version
    from exabgp.reactor.delay import Delay
    from exabgp.reactor.peer import Peer

    monkeypatch.setattr(Reactor, "_wait_for_io", Reactor._wait_for_io)  # restored after the test
    monkeypatch.setattr(Delay, "increase", Delay.increase)
    monkeypatch.setattr(Peer, "teardown", Peer.teardown)
    monkeypatch.setattr(Peer, "_close", Peer._close)
    from exabgp.reactor.api import API
    from exabgp.reactor.listener import Listener
    from exabgp.reactor.network.connection import Connection

    patched = {
        Listener: ("__init__", "incoming", "_connected", "_listen"),
        Reactor: ("__init__", "active_peers", "reload"),
        Peer: ("run",),
        API: ("process",),
        ASYNC: ("schedule", "run"),
        Connection: ("writer",),
    }
    for cls, names in patched.items():
        for name in names:
            monkeypatch.setattr(cls, name, getattr(cls, name))
    import exabgp.reactor.api.response.json as json_response
    import exabgp.util

    monkeypatch.setattr(exabgp.util, "hexstring", exabgp.util.hexstring)
    monkeypatch.setattr(json_response, "hexstring", json_response.hexstring)
    monkeypatch.setattr(exabgp.version, "version", "6.0.0")
    assert launch.patch() is False
    monkeypatch.setattr(exabgp.version, "version", "5.0.15")
    assert launch.patch() is True and Reactor._wait_for_io is launch.wait_for_io


def test_an_api_teardown_sends_its_notification_even_with_graceful_restart() -> None:
    from exabgp.bgp.message import Notify

    class FakePeer:
        closed: str = ""
        torn: int | None = None
        restart: bool | None = None

        def teardown(self, code: int, restart: bool = True) -> None:
            self.torn, self.restart = code, restart

        def _close(self, message: str = "", error: str = "") -> None:
            self.closed = message

    launch.hard_teardowns(FakePeer)
    peer = FakePeer()
    silent = launch.SILENT_CLOSE + ", closing without sending any notification"
    peer._close(silent)  # a shutdown (SIGTERM): silent, as a restart must be
    assert peer.closed == silent
    peer.teardown(2)
    assert peer.torn == 2
    with pytest.raises(Notify) as raised:
        peer._close(silent)
    assert (raised.value.code, raised.value.subcode) == (6, 2)
    peer._close("notification sent (6,2)")  # what ExaBGP does after sending it
    assert peer.closed == "notification sent (6,2)"
    assert peer.restart is True  # an administrative shutdown may come back
    peer.teardown(launch.PEER_DECONFIGURED)  # a reload removing the peer: it must not
    assert (peer.torn, peer.restart) == (3, False)


def test_the_silent_close_is_still_worded_as_patched() -> None:
    import inspect

    from exabgp.reactor.peer import Peer

    assert launch.SILENT_CLOSE in inspect.getsource(Peer._main)


def delays(delay_class: Any, attempts: int) -> list[int]:
    """The waits before each outgoing attempt after `attempts` failures in a row."""
    delay = delay_class()
    waits = []
    for _ in range(attempts):
        delay.increase()
        waits.append(delay._next)
    return waits


def test_reconnect_backoff_is_capped(monkeypatch: Any) -> None:
    from exabgp.reactor.delay import Delay

    # unpatched: after two minutes of failures a returning passive reflector waits up to 60 s
    assert max(delays(Delay, 20)) == 60
    monkeypatch.setattr(Delay, "increase", Delay.increase)  # restored after the test
    launch.capped_backoff(Delay)
    waits = delays(Delay, 20)
    assert waits[:4] == [1, 2, 3, 4] and max(waits) == launch.CONNECT_RETRY_MAX


def test_sessions_exabgp_opens_do_not_wait_on_nagle(monkeypatch: Any) -> None:
    from exabgp.protocol.family import AFI
    from exabgp.reactor.network.outgoing import Outgoing

    def nodelay() -> int:
        connection = Outgoing(AFI.ipv4, "127.0.0.1", "127.0.0.1", port=1)  # as Protocol: .top()
        assert connection._setup() is None
        try:
            return int(connection.io.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        finally:
            connection.io.close()
            connection.io = None  # closed: nothing for its __del__ to close and log

    # ExaBGP's own (an earlier test may have applied every patch): its nagle() is commented out
    monkeypatch.setattr(Outgoing, "_setup", getattr(Outgoing._setup, "__wrapped__", Outgoing._setup))
    assert nodelay() == 0
    launch.outgoing_without_nagle(Outgoing)
    assert nodelay() == 1


def test_hexstring_is_exabgps_text() -> None:
    from exabgp.util import hexstring as original

    for value in (b"", b"\x00\xab\x10\xff", bytearray(b"\x01\x02"), bytes(range(256))):
        assert launch.hexstring(value) == original(value)


def test_remove_self_copies_only_for_next_hop_self() -> None:
    class Hop:
        def __init__(self, self_: bool) -> None:
            self.SELF = self_

    class Change:
        def __init__(self, self_: bool) -> None:
            self.nlri = type("Nlri", (), {"nexthop": Hop(self_)})()

    class Neighbor:
        def remove_self(self, changes: Any) -> Any:
            return copy.deepcopy(changes)  # ExaBGP's: a copy whatever the next hop

    launch.copy_only_for_self(Neighbor)
    plain, own = Change(False), Change(True)
    assert Neighbor().remove_self(plain) is plain  # shared between the neighbours
    assert Neighbor().remove_self(own) is not own  # next hop self: its own copy to rewrite


def quiet_exabgp_log() -> None:
    from exabgp.environment import getenv  # type: ignore[import-untyped]
    from exabgp.logger import log  # type: ignore[import-untyped]

    log.init(getenv())
    log.silence()


def test_generator_callbacks_run_without_an_event_loop(monkeypatch: Any) -> None:
    from exabgp.reactor.asynchronous import ASYNC

    quiet_exabgp_log()

    class Async(ASYNC):  # type: ignore[misc]
        pass

    launch.loopless_generators(Async)
    ran: list[str] = []

    def callback(name: str) -> Any:
        ran.append(f"{name} 1")
        yield
        ran.append(f"{name} 2")

    def no_loop(*args: Any) -> None:
        raise AssertionError("asyncio.run called for generator callbacks")

    monkeypatch.setattr(asyncio, "run", no_loop)
    tasks = Async()
    tasks.schedule("1", "first", callback("a"))
    tasks.schedule("2", "second", callback("b"))
    tasks.run()
    assert ran == ["a 1", "a 2", "b 1", "b 2"]
    assert not tasks.run()  # nothing left


def test_coroutine_callbacks_still_get_their_loop() -> None:
    from exabgp.reactor.asynchronous import ASYNC

    quiet_exabgp_log()

    class Async(ASYNC):  # type: ignore[misc]
        pass

    launch.loopless_generators(Async)
    ran: list[str] = []

    async def callback() -> None:
        await asyncio.sleep(0)
        ran.append("awaited")

    tasks = Async()
    tasks.schedule("1", "coroutine", callback())
    tasks.run()
    assert ran == ["awaited"]


def listening_socket(counting: type[socket.socket]) -> socket.socket:
    sock = counting(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    return sock


def polled_listener() -> Any:
    from exabgp.reactor.listener import Listener

    class Polled(Listener):  # type: ignore[misc]
        pass

    quiet_exabgp_log()
    listening.polled_listener(Polled)
    listener = Polled(reactor=None)
    listener.serving = True
    return listener


def closed(connection: Any) -> None:
    """Closes an accepted connection's socket itself: Connection.close() logs through ExaBGP's
    silenced logger, which takes no keyword arguments (a TypeError from __del__ otherwise)."""
    connection.io.close()
    connection.io = None


def test_listener_accepts_only_when_a_connection_waits() -> None:
    accepts = 0

    class Counting(socket.socket):
        def accept(self) -> Any:
            nonlocal accepts
            accepts += 1
            return super().accept()

    listener = polled_listener()
    sock = listening_socket(Counting)
    listener._sockets[sock] = ("127.0.0.1", sock.getsockname()[1], "127.0.0.1", False)
    try:
        assert not any(listener.incoming() for _ in range(100))
        assert accepts == 0
        with socket.create_connection(sock.getsockname()):
            assert listener.incoming() is True
            for connection in listener._connected():
                closed(connection)
        # a listening socket added later is polled too
        other = listening_socket(Counting)
        listener._sockets[other] = ("127.0.0.1", other.getsockname()[1], "127.0.0.1", False)
        with other, socket.create_connection(other.getsockname()):
            assert listener.incoming() is True
            assert [closed(c) for c in listener._connected()] == [None]
    finally:
        sock.close()


def test_listener_takes_every_waiting_connection_in_one_turn_in_order() -> None:
    """ExaBGP took one connection a listening socket a turn: 1,000 clients connecting at once
    overflowed a busy reflector's accept queue."""
    listener = polled_listener()
    assert listener._backlog == listening.LISTEN_BACKLOG
    sock = listening_socket(socket.socket)
    listener._sockets[sock] = ("127.0.0.1", sock.getsockname()[1], "127.0.0.1", False)
    clients = []
    try:
        for _ in range(20):
            client = socket.socket()
            client.bind(("127.0.0.1", 0))
            client.connect(sock.getsockname())
            clients.append(client)
        assert listener.incoming() is True
        connections = listener._connected()
        first = next(connections)  # new_connections may stop after one: the rest wait for it
        assert first.peer == "127.0.0.1" and first.io.getpeername() == clients[0].getsockname()
        closed(first)
        assert listener.incoming() is True  # nothing new, but 19 not handed over yet
        rest = list(listener._connected())
        assert [c.io.getpeername() for c in rest] == [c.getsockname() for c in clients[1:]]
        for connection in rest:
            closed(connection)
        assert listener.incoming() is False
    finally:
        for client in clients:
            client.close()
        sock.close()


def test_exabgp_unpatched_takes_one_connection_a_turn() -> None:
    """The limit itself, so the change stays needed only while it exists."""
    from exabgp.reactor.listener import Listener

    listener = Listener(reactor=None)
    listener.serving = True
    sock = listening_socket(socket.socket)
    listener._sockets[sock] = ("127.0.0.1", sock.getsockname()[1], "127.0.0.1", False)
    clients = [socket.create_connection(sock.getsockname()) for _ in range(3)]
    try:
        assert listener.incoming() is True
        assert len(listener._accepted) == 1  # one taken, two left in the kernel's queue
        listener._accepted.pop(sock).close()
    finally:
        for client in clients:
            client.close()
        sock.close()


def test_a_connection_wakes_the_reactor_without_being_yielded_as_a_peer() -> None:
    reactor = FakeReactor()
    sock = listening_socket(socket.socket)
    reactor.listener._sockets[sock] = ("127.0.0.1", sock.getsockname()[1], "127.0.0.1", False)
    try:
        assert list(launch.wait_for_io(reactor, 0)) == []
        with socket.create_connection(sock.getsockname()):
            assert [fd for fd, _ in reactor._poller.poll(1000)] == [sock.fileno()]
            assert list(launch.wait_for_io(reactor, 1000)) == []  # woke at once, nothing yielded
        del reactor.listener._sockets[sock]
        assert list(launch.wait_for_io(reactor, 0)) == []
        assert reactor._poller.poll(0) == []  # no longer polled
    finally:
        sock.close()


def test_exabgp_runs_without_loading_asyncio_until_something_uses_it() -> None:
    """The launcher's process imports ExaBGP whole with asyncio (and ssl) deferred; a use of an
    asyncio name still gets the real module."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from bgp.exabgp import launch\n"
        "launch.deferred_asyncio()\n"
        "assert launch.patch()\n"
        "import exabgp.application.server, exabgp.reactor.loop\n"
        "assert 'ssl' not in sys.modules and 'asyncio.events' not in sys.modules, 'loaded early'\n"
        "from exabgp.reactor import asynchronous\n"
        "loop = asynchronous.asyncio.new_event_loop()\n"
        "assert loop.run_until_complete(asynchronous.asyncio.sleep(0, 'done')) == 'done'\n"
        "loop.close()\n"
        "assert sys.modules['asyncio'].get_event_loop_policy is not None\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
