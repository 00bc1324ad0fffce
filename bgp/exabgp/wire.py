"""BGP UPDATE messages decoded from their bytes (RFC 4271 §4.3, RFC 4760, RFC 6793), as
ExaBGP hands them over with `receive { packets; }`. Pure.

Issue 18's prototype (b): ExaBGP forwards the UPDATE it read as hex instead of encoding
its parsed form as JSON, and routed decodes NLRI in bulk, one Attributes object per
UPDATE. Four-octet AS numbers are assumed in AS_PATH (ExaBGP always offers the
capability, and BIRD2, FRR and GoBGP accept it). What routed does not use (AGGREGATOR,
ATOMIC_AGGREGATE, unknown optional attributes) is skipped; a malformed message raises
MessageError.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address

from bgp.exabgp.messages import MessageError
from bgp.model import AsPathSegment, Attributes, EndOfRib, IPAddress, IPNetwork, Origin, RouteUpdate
from routed.prefixes import prefix4, prefix6

ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF = 1, 2, 3, 4, 5
COMMUNITIES, ORIGINATOR_ID, CLUSTER_LIST, MP_REACH, MP_UNREACH = 8, 9, 10, 14, 15
EXTENDED_LENGTH = 0x10
SEGMENTS = {1: "as-set", 2: "as-sequence", 3: "confed-sequence", 4: "confed-set"}
AFI_IPV4, AFI_IPV6, SAFI_UNICAST = 1, 2, 1


def decode_update(body: bytes, peer: IPAddress, peer_asn: int) -> RouteUpdate | EndOfRib:
    """An UPDATE's body (after the 19-byte header): its routes, or an End-of-RIB marker."""
    try:
        return _decode(memoryview(body), peer, peer_asn)
    except (IndexError, ValueError) as exc:
        raise MessageError(f"malformed UPDATE: {exc}") from exc


def _decode(body: memoryview, peer: IPAddress, peer_asn: int) -> RouteUpdate | EndOfRib:
    withdrawn_length = int.from_bytes(body[0:2], "big")
    at = 2 + withdrawn_length
    if len(body) < at + 2:
        raise ValueError("withdrawn routes run past the message")
    withdrawn = _prefixes(body[2:at], 4)
    attributes_length = int.from_bytes(body[at : at + 2], "big")
    at += 2
    if len(body) < at + attributes_length:
        raise ValueError("attributes run past the message")
    raw = _attributes(body[at : at + attributes_length])
    nlri = _prefixes(body[at + attributes_length :], 4)
    announced: list[tuple[IPNetwork, Attributes]] = []
    if nlri:
        if NEXT_HOP not in raw:
            raise ValueError("NLRI without a NEXT_HOP")
        shared = _shared(raw, IPv4Address(bytes(raw[NEXT_HOP][:4])))
        announced.extend((prefix, shared) for prefix in nlri)
    if MP_REACH in raw:
        afi, next_hop, prefixes = _mp_reach(raw[MP_REACH])
        if afi == AFI_IPV6 and prefixes:
            shared = _shared(raw, next_hop)
            announced.extend((prefix, shared) for prefix in prefixes)
    if MP_UNREACH in raw:
        value = raw[MP_UNREACH]
        afi, safi = int.from_bytes(value[0:2], "big"), value[2]
        if afi == AFI_IPV6 and safi == SAFI_UNICAST:
            unreached = _prefixes(value[3:], 16)
            if not unreached and not announced and not withdrawn and len(raw) == 1:
                return EndOfRib(peer, "ipv6 unicast")  # RFC 4724 §2: an empty MP_UNREACH
            withdrawn.extend(unreached)
    if not withdrawn_length and not attributes_length and not nlri:
        return EndOfRib(peer, "ipv4 unicast")
    return RouteUpdate(peer, peer_asn, tuple(announced), tuple(withdrawn))


def _attributes(data: memoryview) -> dict[int, memoryview]:
    found: dict[int, memoryview] = {}
    at = 0
    while at < len(data):
        flags, code = data[at], data[at + 1]
        if flags & EXTENDED_LENGTH:
            length, at = int.from_bytes(data[at + 2 : at + 4], "big"), at + 4
        else:
            length, at = data[at + 2], at + 3
        if at + length > len(data):
            raise ValueError(f"attribute {code} runs past the attributes")
        found[code] = data[at : at + length]
        at += length
    return found


def _shared(raw: dict[int, memoryview], next_hop: IPAddress) -> Attributes:
    """One Attributes for every prefix of the UPDATE (they share them on the wire too)."""
    origin = raw.get(ORIGIN)
    med, local_pref = raw.get(MED), raw.get(LOCAL_PREF)
    communities = raw.get(COMMUNITIES, memoryview(b""))
    originator = raw.get(ORIGINATOR_ID)
    clusters = raw.get(CLUSTER_LIST, memoryview(b""))
    return Attributes(
        next_hop=next_hop,
        origin=Origin(origin[0]) if origin is not None else Origin.IGP,
        as_path=_as_path(raw.get(AS_PATH, memoryview(b""))),
        med=int.from_bytes(med, "big") if med is not None else None,
        local_pref=int.from_bytes(local_pref, "big") if local_pref is not None else None,
        communities=tuple(
            (int.from_bytes(communities[i : i + 2], "big"), int.from_bytes(communities[i + 2 : i + 4], "big"))
            for i in range(0, len(communities) - 3, 4)
        ),
        originator_id=IPv4Address(bytes(originator)) if originator is not None else None,
        cluster_list=tuple(IPv4Address(bytes(clusters[i : i + 4])) for i in range(0, len(clusters) - 3, 4)),
    )


def _as_path(data: memoryview) -> tuple[AsPathSegment, ...]:
    segments = []
    at = 0
    while at < len(data):
        kind, count = data[at], data[at + 1]
        end = at + 2 + 4 * count
        if kind not in SEGMENTS or end > len(data):
            raise ValueError(f"AS_PATH segment of type {kind} and {count} AS numbers does not fit")
        asns = tuple(int.from_bytes(data[i : i + 4], "big") for i in range(at + 2, end, 4))
        segments.append(AsPathSegment(SEGMENTS[kind], asns))
        at = end
    return tuple(segments)


def _mp_reach(value: memoryview) -> tuple[int, IPAddress, list[IPNetwork]]:
    afi, safi, hop_length = int.from_bytes(value[0:2], "big"), value[2], value[3]
    if afi != AFI_IPV6 or safi != SAFI_UNICAST:
        return afi, IPv4Address(0), []
    if hop_length not in (16, 32):  # global, or global and link-local (RFC 2545)
        raise ValueError(f"IPv6 next hop of {hop_length} bytes")
    next_hop = ipaddress.IPv6Address(bytes(value[4:20]))
    return afi, next_hop, _prefixes(value[5 + hop_length :], 16)


def _prefixes(data: memoryview, size: int) -> list[IPNetwork]:
    """Length-prefixed NLRI (RFC 4271 §4.3), all of one family."""
    build, bits = (prefix4, 32) if size == 4 else (prefix6, 128)
    found: list[IPNetwork] = []
    at, end = 0, len(data)
    while at < end:
        length = data[at]
        count = (length + 7) >> 3
        if length > bits or at + 1 + count > end:
            raise ValueError(f"prefix of length {length} does not fit")
        value = int.from_bytes(data[at + 1 : at + 1 + count], "big") << (bits - 8 * count)
        spare = bits - length  # trailing bits past the length are not part of it (§4.3)
        found.append(build(value >> spare << spare, length))
        at += 1 + count
    return found
