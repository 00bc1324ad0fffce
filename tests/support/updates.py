"""UPDATE messages built by hand, byte by byte, for the wire decoder's tests and ExaBGP's."""

from __future__ import annotations

import struct
from ipaddress import ip_address

PEER = ip_address("10.0.0.31")


def attr(code: int, value: bytes, flags: int = 0x40) -> bytes:
    if len(value) > 255:
        return bytes([flags | 0x10, code]) + struct.pack("!H", len(value)) + value
    return bytes([flags, code, len(value)]) + value


def body(attrs: bytes = b"", nlri: bytes = b"", withdrawn: bytes = b"") -> bytes:
    return struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs)) + attrs + nlri


ATTRS = (
    attr(1, b"\x00")
    + attr(2, bytes([2, 2]) + struct.pack("!II", 64513, 4200000000))
    + attr(3, bytes([10, 0, 0, 1]))
    + attr(4, struct.pack("!I", 5), 0x80)
    + attr(5, struct.pack("!I", 100))
    + attr(8, struct.pack("!HHHH", 64512, 7, 65535, 1), 0xC0)
    + attr(9, bytes([10, 0, 0, 9]), 0x80)
    + attr(10, bytes([10, 0, 0, 1, 10, 0, 0, 2]), 0x80)
)
