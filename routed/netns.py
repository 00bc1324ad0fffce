"""Netlink sockets in another network namespace, without forking.

pyroute2's own `netns=` support forks a helper process to create the socket.
In the daemon that child inherits asyncio's signal wake-up fd, and its exit
signal reads as a SIGTERM to the parent's loop. A short-lived thread enters the
namespace and creates the socket instead; a netlink socket stays bound to the
namespace it was created in.

The daemon's own thread never changes namespace: a thread started while it was
in a workload's namespace (gRPC starts its pollers and workers from the thread
that calls into it) would stay there for good, and every connection it made
would start from the workload's namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # linux/nsfs.h _IO(0xb7, 0x3): what kind of namespace an nsfs file is
NETNS_RUN_DIR = Path("/run/netns")
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def netns_path(netns: str) -> Path:
    """A name means /run/netns/NAME (as `ip netns` uses); anything with a slash is a path."""
    return Path(netns) if "/" in netns else NETNS_RUN_DIR / netns


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns failed: {os.strerror(err)}")


class NetnsError(OSError):
    """A path that is not a network namespace (or one a workload may not have)."""


def open_netns(path: Path) -> int:
    """An fd of the network namespace at `path`, which must be an nsfs file of a network
    namespace (/run/netns/NAME, /proc/PID/ns/net). Opened non-blocking after a look at what it
    is, so that a FIFO or a device named by a container's runtime can neither block the daemon's
    loop nor be opened for its side effects."""
    try:
        seen = os.stat(path)
    except FileNotFoundError as exc:
        raise NetnsError(f"{path} not found") from exc
    except OSError as exc:
        raise NetnsError(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISREG(seen.st_mode):
        kind = stat.filemode(seen.st_mode)
        raise NetnsError(f"{path} is not a network namespace (not an nsfs file: {kind})")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise NetnsError(f"{path}: {exc.strerror}") from exc
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino):
            raise NetnsError(f"{path} changed while it was opened")
        try:
            nstype = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError as exc:
            raise NetnsError(f"{path} is not a network namespace (not an nsfs file)") from exc
        if nstype != CLONE_NEWNET:
            raise NetnsError(f"{path} is a namespace, but not a network namespace")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def open_workload_netns(netns: str) -> int:
    """`open_netns` for a workload's namespace, which is never the daemon's own network namespace
    nor the machine's (PID 1's): a veth "container side" configured there would give the host a
    default route via the workload gateway."""
    path = netns_path(netns)
    fd = open_netns(path)
    info = os.fstat(fd)
    for host, what in (("/proc/self/ns/net", "routed's own"), ("/proc/1/ns/net", "the host's (PID 1's)")):
        if (info.st_dev, info.st_ino) == _identity(host):
            os.close(fd)
            raise NetnsError(
                f"{netns} is {what} network namespace; a workload needs a namespace of its own "
                "(ip netns add NAME, or the container's /proc/PID/ns/net)"
            )
    return fd


def check_workload_netns(netns: str) -> None:
    os.close(open_workload_netns(netns))


def socket_in(path: Path, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created in the netns at `path` by a thread of its own, which ends with it."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            with entered(path):
                made.append(socket.socket(family, kind, proto))
        except BaseException as exc:  # handed to the caller
            made.append(exc)

    helper = threading.Thread(target=make, name="routed-netns-socket", daemon=True)
    helper.start()
    helper.join()
    (result,) = made
    if isinstance(result, BaseException):
        raise result
    return result


@contextlib.contextmanager
def entered(path: Path) -> Iterator[None]:
    """Run the body in the netns at `path`. The body must not await. Not for the daemon, whose
    thread must stay in its namespace (see the module's docstring): use `socket_in` there."""
    target = open_netns(path)
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
    sock = socket_in(netns_path(netns), socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
    return AsyncIPRoute(fileno=sock.detach(), **kwargs)
