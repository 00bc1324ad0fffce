"""A hostile BGP speaker for tests, written from RFC 4271 with struct: it takes one session,
sends what a well-behaved peer never would, and reports what came back. Standard library only,
so it runs inside a lab node as `python3 tests/bgp_raw_speaker.py ...`.

    bgp_raw_speaker.py LISTEN_ADDR ROUTER_ID ASN NEXT_HOP HOLD_SECONDS

After the handshake it sends, in order:
- 5,000 /32s outside the pools (10.99.0.0/16), in UPDATEs of up to 800 prefixes;
- 10.65.9.2/32 with our own AS in its AS_PATH (a loop);
- 10.65.128.0/17, inside the pools but neither a block nor a host prefix;
- 0.0.0.0/0;
- 10.65.9.1/32, legitimate;
then keeps the session up HOLD_SECONDS (sending KEEPALIVEs), sends an UPDATE whose attribute
length runs past the message, and prints one JSON line: the NOTIFICATION received, if any.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import sys
import time

MARKER = b"\xff" * 16
OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4
WELL_KNOWN = 0x40  # transitive, well-known
ORIGIN, AS_PATH, NEXT_HOP, LOCAL_PREF = 1, 2, 3, 5


def message(kind: int, body: bytes = b"") -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def open_message(asn: int, router_id: str, hold: int) -> bytes:
    capabilities = bytes([1, 4, 0, 1, 0, 1])  # multiprotocol: IPv4 unicast
    capabilities += bytes([65, 4]) + struct.pack("!I", asn)  # four-octet AS
    params = bytes([2, len(capabilities)]) + capabilities
    body = struct.pack(
        "!BHH4sB", 4, asn if asn < 65536 else 23456, hold, socket.inet_aton(router_id), len(params)
    )
    return message(OPEN, body + params)


def attribute(code: int, value: bytes) -> bytes:
    return bytes([WELL_KNOWN, code, len(value)]) + value


def update(prefixes: list[str], next_hop: str, as_path: tuple[int, ...] = ()) -> bytes:
    path = b"" if not as_path else bytes([2, len(as_path)]) + b"".join(struct.pack("!I", a) for a in as_path)
    attrs = (
        attribute(ORIGIN, b"\x00")
        + attribute(AS_PATH, path)
        + attribute(NEXT_HOP, socket.inet_aton(next_hop))
        + attribute(LOCAL_PREF, struct.pack("!I", 100))
    )
    nlri = b""
    for text in prefixes:
        net = ipaddress.ip_network(text)
        nlri += bytes([net.prefixlen]) + net.network_address.packed[: (net.prefixlen + 7) // 8]
    return message(UPDATE, struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs + nlri)


def malformed_update() -> bytes:
    """Path attributes said to be 100 bytes long, in a message that carries 4 of them."""
    return message(UPDATE, struct.pack("!H", 0) + struct.pack("!H", 100) + attribute(ORIGIN, b"\x00")[:4])


def read_message(sock: socket.socket) -> tuple[int, bytes]:
    header = _exactly(sock, 19)
    length, kind = struct.unpack("!HB", header[16:])
    return kind, _exactly(sock, length - 19)


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed by the peer")
        data += chunk
    return data


def main() -> int:
    listen, router_id, asn, next_hop, hold = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        sys.argv[4],
        float(sys.argv[5]),
    )
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((listen, 179))
    server.listen(1)
    server.settimeout(60)
    sock, _ = server.accept()
    sock.settimeout(30)
    sock.sendall(open_message(asn, router_id, 90))
    kind, _ = read_message(sock)
    assert kind == OPEN, kind
    sock.sendall(message(KEEPALIVE))
    outside = [f"10.99.{i // 256}.{i % 256}/32" for i in range(5000)]
    for start in range(0, len(outside), 800):
        sock.sendall(update(outside[start : start + 800], next_hop))
    sock.sendall(update(["10.65.9.2/32"], next_hop, as_path=(65099, asn)))
    sock.sendall(update(["10.65.128.0/17", "0.0.0.0/0", "10.65.9.1/32"], next_hop))
    # next hops nobody may send us (issue 25): another host's container, martians, off the fabric
    for prefix, bad in (
        ("10.65.9.3/32", "10.65.2.1"),
        ("10.65.9.4/32", "127.0.0.1"),
        ("10.65.9.5/32", "0.0.0.0"),
        ("10.65.9.6/32", "224.0.0.1"),
        ("10.65.9.7/32", "192.0.2.1"),
    ):
        sock.sendall(update([prefix], bad))
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        sock.sendall(message(KEEPALIVE))
        time.sleep(1)
    sock.sendall(malformed_update())
    result: dict[str, object] = {"notification": None}
    try:
        while True:
            kind, body = read_message(sock)
            if kind == NOTIFICATION:
                result["notification"] = [body[0], body[1]]
                break
    except (ConnectionError, TimeoutError) as exc:
        result["closed"] = repr(exc)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
