"""Netlink sockets in a workload's namespace (routed/netns.py): made there, and made without the
calling thread ever leaving its own namespace. A thread started by the daemon's thread while it
stood in a new workload's namespace (gRPC starts its own that way) would stay there for good."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest

from routed import netns as routed_netns
from routed.fib.kernel import NetlinkKernel
from routed.netns import async_iproute, netns_path
from tests.integration.conftest import Namespaces
from tests.netns import sh

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)


def test_sockets_are_made_in_the_namespace_by_a_thread_of_their_own(
    namespaces: Namespaces, monkeypatch: pytest.MonkeyPatch
) -> None:
    workload = namespaces.add()
    sh(["ip", "-n", workload, "link", "add", "rt-probe", "type", "veth", "peer", "name", "rt-probe-b"])
    entering_threads: list[bool] = []
    real_setns = routed_netns._setns

    def watched_setns(fd: int) -> None:
        entering_threads.append(threading.current_thread() is threading.main_thread())
        real_setns(fd)

    monkeypatch.setattr(routed_netns, "_setns", watched_setns)
    own = os.readlink("/proc/thread-self/ns/net")

    async def links_there() -> set[str]:
        async with async_iproute(workload) as ipr:
            return {link.get("ifname") async for link in await ipr.link("dump")}

    names = asyncio.run(links_there())
    assert "rt-probe" in names, names  # the socket is in the workload's namespace

    kernel = NetlinkKernel(table=254, netns=workload)
    sock = kernel._open()
    sock.close()

    assert entering_threads, "no namespace was entered: the sockets cannot be in the workload's"
    assert not any(entering_threads), "the calling thread entered the workload's namespace"
    assert os.readlink("/proc/thread-self/ns/net") == own
    assert netns_path(workload).exists()


def test_a_missing_namespace_is_an_error_in_the_caller() -> None:
    with pytest.raises(routed_netns.NetnsError, match="not found"):
        routed_netns.socket_in(netns_path("rt-no-such-namespace"), socket.AF_NETLINK, socket.SOCK_RAW)
