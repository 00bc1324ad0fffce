"""select.poll's interface over epoll, for ExaBGP's reactor (applied by bgp.exabgp.launch).

The reactor polls every peer's socket on every turn of its loop, and poll() costs the kernel
time for every descriptor it is given: ~53 us a call for 1,000 idle TCP sockets on this
machine (epoll_wait: 0.3 us). A reflector of 1,000 clients turns its loop ~80 times a second
when idle (its ten timer turns and every client's keepalive), and more under load. epoll keeps
the set in the kernel and reports only what is ready.

What differs from poll, and how it is kept as the reactor expects: a descriptor's registration
follows the socket, not the number, so a closed socket leaves the set by itself (poll reported
POLLNVAL for it until unregistered) and a new socket given the same number must be registered
again: `register` always tells the kernel, so a number the reactor registers again is watched
whatever socket it now is. Registering a closed descriptor is not an error (poll took any
number); it is simply not watched.
"""

from __future__ import annotations

import contextlib
import errno
import select
from typing import Protocol

WATCHABLE = select.POLLIN | select.POLLPRI | select.POLLOUT | select.POLLERR | select.POLLHUP
DEFAULT_MASK = select.POLLIN | select.POLLPRI | select.POLLOUT


class HasFileno(Protocol):
    def fileno(self) -> int: ...


def _number(fd: int | HasFileno) -> int:
    number = fd if isinstance(fd, int) else fd.fileno()
    if number < 0:
        raise ValueError("file descriptor cannot be a negative integer")
    return number


class EpollPoller:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._masks: dict[int, int] = {}

    def register(self, fd: int | HasFileno, eventmask: int = DEFAULT_MASK) -> None:
        number, mask = _number(fd), eventmask & WATCHABLE
        try:
            try:
                self._epoll.modify(number, mask)
            except FileNotFoundError:  # not in the set: never registered, or its socket closed
                self._epoll.register(number, mask)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            self._masks.pop(number, None)  # closed already: nothing to watch, as poll's POLLNVAL
            return
        self._masks[number] = mask

    modify = register

    def unregister(self, fd: int | HasFileno) -> None:
        number = _number(fd)
        del self._masks[number]  # KeyError for a number never registered, as poll
        with contextlib.suppress(OSError):  # its socket closed, and left the set then
            self._epoll.unregister(number)

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        """Like poll.poll: `timeout` in milliseconds, None or negative to wait for ever."""
        seconds = -1.0 if timeout is None or timeout < 0 else timeout / 1000
        return self._epoll.poll(seconds)

    def close(self) -> None:
        self._epoll.close()
