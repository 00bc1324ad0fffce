"""UDP and TCP flows between lab nodes and containers, seen from the receiving end: the source
address and port the receiver saw, and how many bytes arrived (NAT and PMTU tests)."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tests.lab import Lab

Where = tuple[str, str | None]  # (lab node, container netns inside it, or None for the node itself)

RECEIVER = r"""
import socket, sys
address, port, kind, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
family = socket.AF_INET6 if ":" in address else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((address, port))
s.settimeout(timeout)
try:
    if kind == "udp":
        data, peer = s.recvfrom(65535)
        print(peer[0], peer[1], len(data))
    else:
        s.listen(1)
        conn, peer = s.accept()
        conn.settimeout(timeout)
        total = 0
        while chunk := conn.recv(65536):
            total += len(chunk)
        print(peer[0], peer[1], total)
except OSError as exc:
    print("none 0 0", exc)
"""

SENDER = r"""
import socket, sys, time
address, port, kind, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
family = socket.AF_INET6 if ":" in address else socket.AF_INET
if kind == "udp":
    s = socket.socket(family, socket.SOCK_DGRAM)
    for _ in range(15):
        s.sendto(b"x" * size, (address, port))
        time.sleep(0.1)
    sys.exit(0)
deadline = time.monotonic() + 5
while True:
    try:
        s = socket.create_connection((address, port), timeout=2)
        break
    except OSError:
        if time.monotonic() > deadline:
            print("connect failed")
            sys.exit(1)
        time.sleep(0.1)
s.settimeout(10)
try:
    s.sendall(b"x" * size)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
except OSError as exc:
    print("send failed:", exc)
    sys.exit(1)
"""


@dataclass(frozen=True)
class Seen:
    source: str | None  # None: nothing arrived
    port: int
    size: int


def _argv(where: Where, *argv: str) -> tuple[str, list[str]]:
    node, netns = where
    return node, (["ip", "netns", "exec", netns, *argv] if netns else list(argv))


def received(
    lab: Lab,
    receiver: Where,
    address: str,
    sender: Where,
    kind: str = "udp",
    size: int = 64,
    port: int = 7070,
) -> Seen:
    """Start a receiver on `address` in `receiver`, send from `sender`: what the receiver saw."""
    timeout = "4" if kind == "udp" else "25"
    node, listen = _argv(receiver, sys.executable, "-c", RECEIVER, address, str(port), kind, timeout)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(lab.exec, node, *listen, check=False, timeout=40)
        sender_node, send = _argv(sender, sys.executable, "-c", SENDER, address, str(port), kind, str(size))
        lab.exec(sender_node, *send, check=False, timeout=40)
        out = future.result().stdout.split()
    if not out or out[0] == "none":
        return Seen(None, 0, 0)
    return Seen(out[0], int(out[1]), int(out[2]))
