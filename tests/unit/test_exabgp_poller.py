"""bgp.exabgp.poller: select.poll's interface over epoll, as ExaBGP's reactor uses it."""

from __future__ import annotations

import os
import select
import socket

import pytest

from bgp.exabgp.poller import EpollPoller

WATCH = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLNVAL | select.POLLERR  # the reactor's


def test_reports_what_is_ready_and_nothing_else() -> None:
    poller = EpollPoller()
    (a, b), (c, d) = socket.socketpair(), socket.socketpair()
    poller.register(b.fileno(), WATCH)
    poller.register(d, WATCH)  # an object with fileno(), as poll takes
    assert poller.poll(0) == []
    a.send(b"x")
    assert poller.poll(1000) == [(b.fileno(), select.POLLIN)]
    poller.register(b.fileno(), WATCH)  # again, as the reactor does after every turn: no error
    assert poller.poll(0) == [(b.fileno(), select.POLLIN)]
    poller.unregister(b.fileno())
    assert poller.poll(0) == []
    for s in (a, b, c, d):
        s.close()


def test_a_closed_socket_leaves_and_its_number_reused_is_watched_again() -> None:
    poller = EpollPoller()
    a, b = socket.socketpair()
    number = b.fileno()
    poller.register(number, WATCH)
    b.close()
    assert poller.poll(0) == []  # gone with its socket (poll said POLLNVAL until unregistered)
    poller.register(number, WATCH)  # a closed number is no error, as with poll
    c, d = socket.socketpair()
    reused = c if c.fileno() == number else d
    peer = d if reused is c else c
    assert reused.fileno() == number or pytest.skip("the kernel gave another number")
    poller.register(number, WATCH)  # the reactor registers the new socket under the old number
    peer.send(b"y")
    assert poller.poll(1000) == [(number, select.POLLIN)]
    poller.unregister(number)
    for s in (a, c, d):
        s.close()


def test_unregister_as_poll_does() -> None:
    poller = EpollPoller()
    with pytest.raises(KeyError):
        poller.unregister(12345)
    a, b = socket.socketpair()
    poller.register(b.fileno(), WATCH)
    number = b.fileno()
    b.close()
    poller.unregister(number)  # closed: nothing left to remove, no error
    with pytest.raises(ValueError):
        poller.register(-1, WATCH)
    a.close()


def test_a_hung_up_peer_is_reported() -> None:
    poller = EpollPoller()
    a, b = socket.socketpair()
    poller.register(b.fileno(), WATCH)
    a.close()
    ((fd, events),) = poller.poll(0)
    assert fd == b.fileno() and events & (select.POLLIN | select.POLLHUP)
    b.close()
    os.close(os.dup(0))  # the process's descriptors are untouched
