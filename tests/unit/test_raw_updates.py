"""The fast receive path (issue 18): ExaBGP hands a plain UPDATE to routed as its bytes.

`wire.is_plain` must vouch only for UPDATEs that routed's decoder reads exactly as ExaBGP's
own decoder would; everything else keeps ExaBGP's decoding and error handling. Checked
against ExaBGP itself: its decoder, on thousands of mutated messages, and its patched
process API in a child interpreter (the patch changes ExaBGP's classes for good).
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from bgp.exabgp.wire import decode_update, is_plain
from bgp.model import EndOfRib, RouteUpdate
from tests.support.updates import ATTRS, PEER, attr, body  # the same hand-built UPDATEs

ROOT = Path(__file__).resolve().parents[2]
NLRI = bytes([32, 10, 65, 1, 7, 26, 10, 65, 1, 64, 24, 10, 66, 3])
REACH6 = (
    struct.pack("!HBB", 2, 1, 16)
    + IPv6Address("fd00::11").packed
    + b"\x00"
    + bytes([128])
    + IPv6Address("fd00:65::7").packed
)
UNREACH6 = struct.pack("!HB", 2, 1) + bytes([64]) + IPv6Address("fd00:66::").packed[:8]
PLAIN = {
    "routes with every attribute routed reads": body(ATTRS, NLRI),
    "a withdrawal": body(withdrawn=bytes([32, 10, 65, 1, 7])),
    "an iBGP route with an empty AS_PATH": body(
        attr(1, b"\x00") + attr(2, b"") + attr(3, bytes([10, 0, 0, 1])), NLRI
    ),
    "IPv6 routes": body(attr(1, b"\x00") + attr(2, b"") + attr(14, REACH6, 0x80)),
    "an IPv6 withdrawal": body(attr(15, UNREACH6, 0x80)),
    "AGGREGATOR and ATOMIC_AGGREGATE (skipped)": body(
        ATTRS + attr(6, b"") + attr(7, struct.pack("!I", 64513) + bytes([10, 0, 0, 1]), 0xC0), NLRI
    ),
}
NOT_PLAIN = {
    "IPv4 End-of-RIB": body(),
    "IPv6 End-of-RIB": body(attr(15, struct.pack("!HB", 2, 1), 0x80)),
    "an unknown attribute": body(ATTRS + attr(32, bytes(12), 0xC0), NLRI),
    "a duplicated attribute": body(ATTRS + attr(5, struct.pack("!I", 200)), NLRI),
    "ORIGIN flagged optional": body(ATTRS.replace(b"\x40\x01\x01", b"\x80\x01\x01", 1), NLRI),
    "an ORIGIN value of 3": body(ATTRS.replace(b"\x40\x01\x01\x00", b"\x40\x01\x01\x03", 1), NLRI),
    "a community of 6 bytes": body(ATTRS + attr(8, bytes(6), 0xC0), NLRI),
    "an empty COMMUNITIES": body(
        attr(1, b"\x00") + attr(2, b"") + attr(3, bytes(4)) + attr(8, b"", 0xC0), NLRI
    ),
    "an attribute past the attributes": body(b"\x40\x02\x09\x02", NLRI),
    "a prefix of length 33": body(ATTRS, bytes([33, 10, 0, 0, 0, 0])),
    "a prefix cut short": body(ATTRS, bytes([32, 10, 0])),
    "routes without a NEXT_HOP": body(attr(1, b"\x00") + attr(2, b""), NLRI),
    "routes without an AS_PATH": body(attr(1, b"\x00") + attr(3, bytes([10, 0, 0, 1])), NLRI),
    "an AS_PATH confederation segment": body(ATTRS.replace(bytes([2, 2]), bytes([3, 2]), 1), NLRI),
    "MP_REACH of IPv4 labelled routes": body(
        attr(1, b"\x00") + attr(2, b"") + attr(14, b"\x00\x01\x04" + bytes(9), 0x80)
    ),
    "a withdrawn prefix of length 40": body(withdrawn=bytes([40, 10, 65, 1, 7, 0])),
}


@pytest.mark.parametrize("name", PLAIN)
def test_plain_updates_take_the_fast_path(name: str) -> None:
    assert is_plain(PLAIN[name])
    assert isinstance(decode_update(PLAIN[name], PEER, 64512), RouteUpdate)


@pytest.mark.parametrize("name", NOT_PLAIN)
def test_anything_unusual_is_left_to_exabgp(name: str) -> None:
    assert not is_plain(NOT_PLAIN[name])


def test_ipv6_on_a_session_without_it_is_left_to_exabgp() -> None:
    """ExaBGP answers a family the session did not negotiate with a NOTIFICATION (3/9)."""
    assert not is_plain(PLAIN["IPv6 routes"], ipv6=False)
    assert not is_plain(PLAIN["an IPv6 withdrawal"], ipv6=False)
    assert is_plain(PLAIN["routes with every attribute routed reads"], ipv6=False)


def exabgp_decoder() -> tuple[Any, Any, Any]:
    from exabgp.bgp.message.direction import Direction  # type: ignore[import-untyped]
    from exabgp.bgp.message.open.capability.negotiated import Negotiated  # type: ignore[import-untyped]
    from exabgp.bgp.message.update import Update  # type: ignore[import-untyped]
    from exabgp.environment import getenv  # type: ignore[import-untyped]
    from exabgp.logger import log  # type: ignore[import-untyped]

    log.init(getenv())
    log.silence()
    from exabgp.protocol.family import AFI, SAFI  # type: ignore[import-untyped]

    negotiated = Negotiated({"capability": {"aigp": False}})
    negotiated.asn4 = True
    negotiated.families = [(AFI.ipv4, SAFI.unicast), (AFI.ipv6, SAFI.unicast)]
    return Update, Direction.IN, negotiated


def mutations(seed: int, count: int) -> list[bytes]:
    """The plain messages with one to three bytes changed, or cut short, at random."""
    rng = random.Random(seed)
    found = []
    for _ in range(count):
        data = bytearray(rng.choice(list(PLAIN.values())))
        if rng.random() < 0.1:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.choice(
                    (0, 1, 2, 3, 4, 14, 15, 32, 33, 64, 128, 255, rng.randrange(256))
                )
        found.append(bytes(data))
    return found


def test_whatever_is_plain_routed_reads_as_exabgp_does() -> None:
    """On 4000 mutated UPDATEs: each one is_plain passes, ExaBGP decodes without an error or a
    treat-as-withdraw, to the same routes with the same attributes as routed's decoder."""
    from bench.exabgp_inprocess import to_route_update

    update_class, incoming, negotiated = exabgp_decoder()
    plain = 0
    for data in [*PLAIN.values(), *mutations(18, 4000)]:
        if not is_plain(data):
            continue
        plain += 1
        unpack = getattr(
            update_class, "exabgp_unpack_message", update_class.unpack_message
        )  # launch.patch()ed?
        theirs = unpack(data, incoming, negotiated)
        assert not any(code >= 0xFFFE for code in theirs.attributes), data.hex()  # ExaBGP's internal codes
        ours = decode_update(data, PEER, 64512)
        assert not isinstance(ours, EndOfRib)
        assert ours == to_route_update(PEER, 64512, theirs), data.hex()
    assert plain > 100  # the mutations exercised the fast path, not only the refusals


PATCHED = """
import json, sys
from bgp.exabgp import launch
assert launch.patch()
from exabgp.bgp.message import Message
from exabgp.bgp.message.notification import Notify
from exabgp.reactor.api.processes import Processes
from exabgp.reactor.api.response import Response
from exabgp.version import json as json_version
sys.path.insert(0, sys.argv[1])
from tests.unit.test_raw_updates import exabgp_decoder
update_class, incoming, negotiated = exabgp_decoder()
out = {}
for name, hexed in json.loads(sys.stdin.read()).items():
    try:
        decoded = update_class.unpack_message(bytes.fromhex(hexed), incoming, negotiated)
    except Notify as exc:
        out[name] = {"notify": [exc.code, exc.subcode]}
        continue
    lines = []
    class Api(Processes):
        def __init__(self): self._encoder = {"routed": Response.JSON(json_version)}
        def _notify(self, neighbor, event): yield "routed"
        def write(self, process, line, neighbor=None): lines.append(line)
    class Neighbor(dict):
        uid = "1"
    peer = Neighbor({"local-address": "10.0.0.11", "peer-address": "10.0.0.31", "local-as": 64512, "peer-as": 64512, "router-id": "10.0.0.11"})
    Processes._dispatch[Message.CODE.UPDATE](Api(), peer, "receive", decoded, None, b"", b"")
    out[name] = {"raw": hasattr(decoded, "body"), "nlris": len(decoded.nlris), "lines": lines}
print(json.dumps(out))
"""


def test_exabgp_patched_passes_plain_updates_raw_and_decodes_the_rest_itself() -> None:
    from bgp.exabgp.messages import parse_line

    cases = {
        "plain": PLAIN["routes with every attribute routed reads"],
        "unknown attribute": NOT_PLAIN["an unknown attribute"],
        "past the attributes": NOT_PLAIN["an attribute past the attributes"],
    }
    result = subprocess.run(
        [sys.executable, "-c", PATCHED, str(ROOT)],
        input=json.dumps({k: v.hex() for k, v in cases.items()}),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    out = json.loads(result.stdout)
    # the plain one: undecoded by ExaBGP, its bytes in the line, decoded by routed
    assert out["plain"]["raw"] and out["plain"]["nlris"] == 0
    (line,) = out["plain"]["lines"]
    assert parse_line(line) == decode_update(cases["plain"], PEER, 64512)
    # an unusual one: ExaBGP's decoding and its JSON, as before
    assert not out["unknown attribute"]["raw"] and out["unknown attribute"]["nlris"] == 3
    (line,) = out["unknown attribute"]["lines"]
    parsed = parse_line(line)
    assert isinstance(parsed, RouteUpdate) and len(parsed.announced) == 3
    assert parsed.announced[0][1].next_hop == IPv4Address("10.0.0.1")
    # a malformed one: ExaBGP's own answer (here, RFC 7606's treat-as-withdraw of all three)
    assert not out["past the attributes"]["raw"]
