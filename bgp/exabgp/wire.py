"""BGP UPDATE messages checked and decoded from their bytes (RFC 4271 §4.3, RFC 4760,
RFC 6793). Pure.

How routed receives UPDATEs (issue 18, NOTES.md): ExaBGP's process runs `is_plain` over
each UPDATE it reads; one that passes is not decoded by ExaBGP at all but handed to
routed as its bytes (bgp/exabgp/rawupdates.py), and routed decodes its NLRI in bulk here,
one Attributes object per UPDATE. Anything `is_plain` does not vouch for (an unknown or
duplicated attribute, unexpected flags, a length that does not add up, End-of-RIB) takes
ExaBGP's own decoder as before, with its RFC 7606 error handling and its NOTIFICATIONs.
Four-octet AS numbers in AS_PATH: the fast path is only taken on sessions that
negotiated them. What routed does not use (AGGREGATOR, ATOMIC_AGGREGATE) is skipped;
a malformed message raises MalformedUpdate.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address

from bgp.model import AsPathSegment, Attributes, EndOfRib, IPAddress, IPNetwork, Origin, RouteUpdate
from bgp.prefixes import prefix4, prefix6

ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF = 1, 2, 3, 4, 5
COMMUNITIES, ORIGINATOR_ID, CLUSTER_LIST, MP_REACH, MP_UNREACH = 8, 9, 10, 14, 15
EXTENDED_LENGTH = 0x10
SEGMENTS = {1: "as-set", 2: "as-sequence", 3: "confed-sequence", 4: "confed-set"}
AFI_IPV4, AFI_IPV6, SAFI_UNICAST = 1, 2, 1
ATOMIC_AGGREGATE, AGGREGATOR = 6, 7
WELL_KNOWN, OPTIONAL, OPTIONAL_TRANSITIVE = 0x40, 0x80, 0xC0
PARTIAL = 0x20
# The attributes the fast path vouches for: their flags (extended length aside) and the
# lengths their value may have. Any other attribute leaves the UPDATE to ExaBGP.
PLAIN_FLAGS = {
    ORIGIN: WELL_KNOWN,
    AS_PATH: WELL_KNOWN,
    NEXT_HOP: WELL_KNOWN,
    MED: OPTIONAL,
    LOCAL_PREF: WELL_KNOWN,
    ATOMIC_AGGREGATE: WELL_KNOWN,
    AGGREGATOR: OPTIONAL_TRANSITIVE,
    COMMUNITIES: OPTIONAL_TRANSITIVE,
    ORIGINATOR_ID: OPTIONAL,
    CLUSTER_LIST: OPTIONAL,
    MP_REACH: OPTIONAL,
    MP_UNREACH: OPTIONAL,
}
FIXED_LENGTH = {
    ORIGIN: 1,
    NEXT_HOP: 4,
    MED: 4,
    LOCAL_PREF: 4,
    ATOMIC_AGGREGATE: 0,
    AGGREGATOR: 8,
    ORIGINATOR_ID: 4,
}
WHOLE_UNITS = {COMMUNITIES: 4, CLUSTER_LIST: 4}


class MalformedUpdate(ValueError):
    """The bytes are not an UPDATE routed can read."""


def is_plain(body: bytes, ipv6: bool = True) -> bool:
    """Whether an UPDATE (a session with four-octet AS numbers) is well formed in every way
    routed's decoder relies on, so that it reads it exactly as ExaBGP would. False sends it
    down ExaBGP's own decoder: for anything odd, ExaBGP's answer (RFC 7606) stays the answer.
    `ipv6`: the session negotiated IPv6 unicast (else MP_REACH/MP_UNREACH are an error)."""
    try:
        return _plain(body, ipv6)
    except IndexError:
        return False


def _plain(body: bytes, ipv6: bool) -> bool:
    end = len(body)
    if end <= 4:
        return False  # an IPv4 End-of-RIB (or less): ExaBGP's
    withdrawn_end = 2 + int.from_bytes(body[0:2], "big")
    if withdrawn_end + 2 > end or not _prefixes_fit(body, 2, withdrawn_end, 32):
        return False
    attributes_end = withdrawn_end + 2 + int.from_bytes(body[withdrawn_end : withdrawn_end + 2], "big")
    if attributes_end > end or not _prefixes_fit(body, attributes_end, end, 32):
        return False
    seen = set()
    unreach_length = 0
    at = withdrawn_end + 2
    while at < attributes_end:
        flags, code = body[at], body[at + 1]
        if flags & EXTENDED_LENGTH:
            length, at = int.from_bytes(body[at + 2 : at + 4], "big"), at + 4
        else:
            length, at = body[at + 2], at + 3
        if at + length > attributes_end or code in seen or code not in PLAIN_FLAGS:
            return False
        if not ipv6 and code in (MP_REACH, MP_UNREACH):
            return False
        seen.add(code)
        expected = PLAIN_FLAGS[code]
        if flags & ~(EXTENDED_LENGTH | (PARTIAL if expected & OPTIONAL else 0)) & 0xFF != expected:
            return False
        if not _value_plain(code, body[at : at + length]):
            return False
        if code == MP_UNREACH:
            unreach_length = length
        at += length
    if at != attributes_end:
        return False
    if attributes_end < end or MP_REACH in seen:  # routes: the well-known attributes are there
        wanted = {ORIGIN, AS_PATH} | ({NEXT_HOP} if attributes_end < end else set())
        if not wanted <= seen:
            return False
    # an MP_UNREACH of no prefixes and nothing else is the IPv6 End-of-RIB: ExaBGP's
    return not (seen == {MP_UNREACH} and withdrawn_end == 2 and attributes_end == end and unreach_length == 3)


def _value_plain(code: int, value: bytes) -> bool:
    length = len(value)
    if code in FIXED_LENGTH:
        return length == FIXED_LENGTH[code] and (code != ORIGIN or value[0] <= 2)
    if code in WHOLE_UNITS:
        return length > 0 and length % WHOLE_UNITS[code] == 0
    if code == AS_PATH:
        at = 0
        while at < length:
            if value[at] not in (1, 2) or value[at + 1] == 0:
                return False
            at += 2 + 4 * value[at + 1]
        return at == length
    afi, safi = int.from_bytes(value[0:2], "big"), value[2]
    if afi != AFI_IPV6 or safi != SAFI_UNICAST:
        return False
    if code == MP_UNREACH:
        return _prefixes_fit(value, 3, length, 128)
    hop_length = value[3]  # MP_REACH: next hop, a reserved byte, NLRI
    return (
        hop_length in (16, 32)
        and 5 + hop_length <= length
        and _prefixes_fit(value, 5 + hop_length, length, 128)
    )


def _prefixes_fit(data: bytes, at: int, end: int, bits: int) -> bool:
    while at < end:
        length = data[at]
        if length > bits:
            return False
        at += 1 + ((length + 7) >> 3)
    return at == end


def decode_update(body: bytes, peer: IPAddress, peer_asn: int) -> RouteUpdate | EndOfRib:
    """An UPDATE's body (after the 19-byte header): its routes, or an End-of-RIB marker."""
    try:
        return _decode(memoryview(body), peer, peer_asn)
    except (IndexError, ValueError) as exc:
        raise MalformedUpdate(f"malformed UPDATE: {exc}") from exc


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
        communities=tuple(  # sorted, as ExaBGP keeps them (and so as routed always saw them)
            sorted(
                (
                    int.from_bytes(communities[i : i + 2], "big"),
                    int.from_bytes(communities[i + 2 : i + 4], "big"),
                )
                for i in range(0, len(communities) - 3, 4)
            )
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
