"""Netlink sockets in another network namespace, without forking.

pyroute2's own `netns=` support forks a helper process to create the socket.
In the daemon that child inherits asyncio's signal wake-up fd, and its exit
signal reads as a SIGTERM to the parent's loop. Entering the namespace in this
thread just long enough to create the socket avoids any child at all; a netlink
socket stays bound to the namespace it was created in.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/run/netns")
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def netns_path(netns: str) -> Path:
    """A name means /run/netns/NAME (as `ip netns` uses); anything with a slash is a path."""
    return Path(netns) if "/" in netns else NETNS_RUN_DIR / netns


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns failed: {os.strerror(err)}")


@contextlib.contextmanager
def entered(path: Path) -> Iterator[None]:
    """Run the body in the netns at `path`. The body must not await."""
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(saved)
    finally:
        os.close(target)
        os.close(saved)


def async_iproute(netns: str | None = None, **kwargs: Any) -> Any:
    """An AsyncIPRoute whose socket lives in `netns` (None: the current namespace)."""
    if netns is None:
        return AsyncIPRoute(**kwargs)
    with entered(netns_path(netns)):
        ipr = AsyncIPRoute(**kwargs)
        _ = ipr.socket  # created now, inside the namespace
    return ipr
