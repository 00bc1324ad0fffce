"""Count route additions and deletions in a namespace from raw netlink, cheaply.

A bulk benchmark sees 100k route events; parsing them with pyroute2 would cost the
benchmark seconds of CPU on a 2-core machine, competing with the daemons it
measures. This reads only the netlink and rtmsg headers and the RTA_DST attribute.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from routed.netns import NETNS_RUN_DIR, entered

RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE = 0x40, 0x400
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTA_DST = 1
SO_RCVBUFFORCE = 33


class RouteCounter:
    """Follows one namespace's routes (IPv4, and IPv6 too) whose destination satisfies `match`."""

    def __init__(self, netns: str, match: Callable[[bytes, int], bool]) -> None:
        with entered(NETNS_RUN_DIR / netns):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
        self.sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
        self.sock.settimeout(0.5)
        self.match = match
        self.present: set[bytes] = set()
        self.overflows = 0
        self.stamp = 0.0  # time.time() when the last batch was read

    def close(self) -> None:
        self.sock.close()

    def _read(self) -> bool:
        """Read one batch; True if it changed the matching set."""
        try:
            data = self.sock.recv(1 << 22)
        except TimeoutError:
            return False
        except OSError:  # ENOBUFS: the count may be off; the caller re-checks with a dump
            self.overflows += 1
            return False
        self.stamp = time.time()
        before = len(self.present)
        offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("IH", data, offset)
            if length < 16:
                break
            if kind in (RTM_NEWROUTE, RTM_DELROUTE):
                body = offset + 16
                dst_len = data[body + 1]
                attr = body + 12
                end = offset + length
                while attr + 4 <= end:
                    alen, atype = struct.unpack_from("HH", data, attr)
                    if alen < 4:
                        break
                    if atype == RTA_DST:
                        dst = data[attr + 4 : attr + alen]
                        if self.match(dst, dst_len):
                            if kind == RTM_NEWROUTE:
                                self.present.add(dst)
                            else:
                                self.present.discard(dst)
                        break
                    attr += (alen + 3) & ~3
            offset += (length + 3) & ~3
        return len(self.present) != before

    def wait_for(self, count: int, timeout: float) -> float | None:
        """When (time.time() scale, as read) exactly `count` matching routes were present.

        None on timeout. Counts already reached before the call return the stamp of the
        message that reached them.
        """
        deadline = time.monotonic() + timeout
        while len(self.present) != count:
            if time.monotonic() > deadline:
                return None
            self._read()
        return self.stamp


def wait_all(counters: list[RouteCounter], count: int, timeout: float) -> list[float | None]:
    """Follow several namespaces at once, so each is timed when its route lands, not when read."""
    import select

    deadline = time.monotonic() + timeout
    reached: list[float | None] = [c.stamp if len(c.present) == count else None for c in counters]
    while any(r is None for r in reached) and time.monotonic() < deadline:
        ready, _, _ = select.select([c.sock for c in counters], [], [], 0.2)
        for index, counter in enumerate(counters):
            if counter.sock in ready and reached[index] is None:
                counter._read()
                if len(counter.present) == count:
                    reached[index] = counter.stamp
    return reached
