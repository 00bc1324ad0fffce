"""ExaBGP's listener for a reflector whose clients connect at once, applied by bgp.exabgp.launch.

`polled_listener`: Listener.incoming called accept() on every listening socket on every reactor
turn, raising EAGAIN when nothing waited (docs/upstream/exabgp/0005); and it took one
connection a socket a turn with a listen backlog of 200, which 1,000 clients overflowed
(docs/upstream/exabgp/0011). `polled_listening_sockets`: the listening sockets in the reactor's
poll set, so a connection wakes an idle reactor (launch.wait_for_io calls it every turn).
"""

from __future__ import annotations

import contextlib
import select
from collections import deque
from collections.abc import Iterator
from typing import Any

ACCEPTS_PER_TURN = 256  # connections taken from one listening socket in one reactor turn
LISTEN_BACKLOG = 4096  # ExaBGP asks for 200; the kernel caps it at net.core.somaxconn


def polled_listening_sockets(self: Any) -> set[int]:
    """Keeps the listening sockets in the reactor's poll set and returns their descriptors. An
    idle reactor slept a whole period (speed/100 s, 100 ms at routed's speed) before it looked
    for new connections; now a client's connection wakes it."""
    listening = {sock.fileno() for sock in self.listener._sockets}
    registered: set[int] = self.__dict__.setdefault("_routed_listening", set())
    if listening != registered:
        for fd in registered - listening:
            with contextlib.suppress(KeyError):  # closed, and dropped from the poll set already
                self._poller.unregister(fd)
        for fd in listening - registered:
            self._poller.register(fd, select.POLLIN)
        registered.clear()
        registered.update(listening)
    return listening


def polled_listener(listener_class: Any) -> None:
    """Listener.incoming called accept() on every listening socket on every reactor turn;
    with nothing waiting each call raised EAGAIN (~6 us). A poll(0) over the listening
    sockets (~0.6 us) says first whether any accept() can succeed
    (docs/upstream/exabgp/0005).

    And it listened with a backlog of 200 and took one connection per listening socket per
    turn: a reflector whose 1,000 clients connect at once, its turns long with the sessions
    already up, overflowed the kernel's accept queue and the clients came back on their SYN
    retransmission timers, seconds to a minute later. It listens with LISTEN_BACKLOG now and
    takes every waiting connection (up to ACCEPTS_PER_TURN a socket), each handed over once,
    in order (docs/upstream/exabgp/0011)."""
    from exabgp.logger import log  # type: ignore[import-untyped]
    from exabgp.reactor.network.error import error  # type: ignore[import-untyped]

    def waiting(self: Any) -> deque[tuple[Any, Any]]:
        accepted: deque[tuple[Any, Any]] = self.__dict__.setdefault("_routed_waiting", deque())
        return accepted

    def incoming_all(self: Any) -> bool:
        if not self.serving:
            return False
        accepted = waiting(self)
        polled = self.__dict__.get("_routed_polled")
        if polled is None or polled[0] != list(self._sockets):
            poller = select.poll()
            for sock in self._sockets:
                poller.register(sock, select.POLLIN)
            polled = self._routed_polled = (list(self._sockets), poller)
        if not polled[1].poll(0):
            return bool(accepted)  # some not handed over yet (new_connections stopped early)
        for sock in self._sockets:
            for _ in range(ACCEPTS_PER_TURN):
                try:
                    io, _ = sock.accept()
                except OSError as exc:
                    if exc.errno not in error.block:
                        log.critical(lambda exc=exc: str(exc), "network")
                    break
                accepted.append((sock, io))
        return bool(accepted)

    def connected_in_order(self: Any) -> Iterator[Any]:
        from exabgp.reactor.network.incoming import Incoming  # type: ignore[import-untyped]

        accepted = waiting(self)
        while accepted:
            sock, io = accepted.popleft()
            try:
                # ExaBGP's own naming: "local" is the connection's far end, as its neighbours say
                local_ip, remote_ip = io.getpeername()[0], io.getsockname()[0]
            except OSError as exc:  # reset before we got to it
                log.debug(lambda exc=exc: f"accepted connection gone: {exc}", "network")
                io.close()
                continue
            yield Incoming(self._family_AFI_map[sock.family], remote_ip, local_ip, io)

    init = listener_class.__init__

    def init_with_backlog(self: Any, reactor: Any, backlog: int = LISTEN_BACKLOG) -> None:
        init(self, reactor, max(backlog, LISTEN_BACKLOG))

    listener_class.__init__ = init_with_backlog
    listener_class.incoming = incoming_all
    listener_class._connected = connected_in_order
