"""ExaBGP's process-API output (JSON encoder) parsed into typed events. Pure.

Anything malformed raises MessageError; the bridge logs it and drops the line. A plain
UPDATE comes as its bytes (bgp/exabgp/rawupdates.py) and is decoded by wire.py.
Messages of types we do not use (keepalive, refresh, ...) parse to None.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from ipaddress import IPv4Address
from typing import Any

from bgp.exabgp.wire import decode_update
from bgp.model import (
    AsPathSegment,
    Attributes,
    CommandAnswer,
    EndOfRib,
    Event,
    GracefulRestartCapability,
    IPAddress,
    IPNetwork,
    Notification,
    Origin,
    PeerOpen,
    PeerState,
    RouteUpdate,
)
from bgp.prefixes import parse as parse_prefix

FAMILIES = ("ipv4 unicast", "ipv6 unicast")
ORIGINS = {"igp": Origin.IGP, "egp": Origin.EGP, "incomplete": Origin.INCOMPLETE}


class MessageError(ValueError):
    pass


def parse_line(line: str) -> Event | None:
    text = line.strip()
    if not text:
        return None
    if text in ("done", "error", "shutdown"):
        return CommandAnswer(ok=text == "done", text=text)
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise MessageError(f"not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise MessageError("not a JSON object")
    try:
        return _parse(message)
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        # ArithmeticError: int() of a JSON number too large for it (1e999 reads as infinity)
        raise MessageError(f"unexpected shape: {type(exc).__name__}: {exc}") from exc


def _parse(message: dict[str, Any]) -> Event | None:
    if "answer" in message:
        return CommandAnswer(ok=message["answer"] == "done", text=str(message.get("message", "")))
    kind = message.get("type")
    if kind is None:
        raise MessageError("no 'type' field")
    if kind not in ("state", "open", "update", "notification"):
        return None
    if kind == "notification" and "neighbor" not in message:
        return None  # ExaBGP's own {"notification": "shutdown"} as it stops: about no peer
    neighbor = message["neighbor"]
    peer = _address(neighbor["address"]["peer"])
    peer_asn = int(neighbor["asn"]["peer"])
    if kind == "state":
        return PeerState(peer, peer_asn, str(neighbor["state"]), str(neighbor.get("reason", "")))
    if kind == "open":
        if neighbor.get("direction") != "receive":
            return None
        opened = neighbor["open"]
        capabilities = opened.get("capabilities", {})
        return PeerOpen(
            peer,
            IPv4Address(opened["router_id"]),
            _graceful_restart(capabilities),
            _families(capabilities),
        )
    if kind == "notification":
        note = neighbor.get("notification", message.get("notification", {}))
        return Notification(
            peer, int(note.get("code", 0)), int(note.get("subcode", 0)), str(note.get("data", ""))
        )
    body = neighbor["message"]
    if "raw" in body:  # an UPDATE ExaBGP passed on undecoded (bgp/exabgp/rawupdates.py)
        return decode_update(bytes.fromhex(body["raw"]), peer, peer_asn)
    if "eor" in body:
        eor = body["eor"]
        return EndOfRib(peer, f"{eor['afi']} {eor['safi']}")
    update = body.get("update")
    if update is None:
        return None
    return _update(peer, peer_asn, update)


@functools.lru_cache(maxsize=1024)
def _address(text: str) -> IPAddress:
    """A peer's address, parsed once: every message names its peer, in a handful of spellings."""
    return ipaddress.ip_address(text)


def _capability(capabilities: dict[str, Any], name: str) -> dict[str, Any] | None:
    # keyed by code or by ExaBGP's name for it, depending on the version: find it by its "name"
    for value in capabilities.values():
        if isinstance(value, dict) and value.get("name") == name:
            return value
    return None


def _graceful_restart(capabilities: dict[str, Any]) -> GracefulRestartCapability | None:
    """RFC 4724's capability. ExaBGP 5.0 labels its bits the other way round: a family's
    forwarding-state bit (0x80) is printed "restart" and the restart-state bit "forwarding";
    either label is read as what the position means, so a fixed ExaBGP reads the same."""
    cap = _capability(capabilities, "graceful restart")
    if cap is None:
        return None
    forwarding = set()
    for family, flags in dict(cap.get("address-family-flags", {})).items():
        afi = str(family).split("/")[0]
        if flags and afi in ("ipv4", "ipv6"):
            forwarding.add(4 if afi == "ipv4" else 6)
    return GracefulRestartCapability(
        restart_time=int(cap.get("time", 0)),
        restarted=bool(cap.get("restart-flags")),
        forwarding=frozenset(forwarding),
    )


def _families(capabilities: dict[str, Any]) -> frozenset[str]:
    """Families the peer offers (RFC 4760); without the capability, IPv4 unicast alone."""
    cap = _capability(capabilities, "multiprotocol")
    if cap is None:
        return frozenset({"ipv4 unicast"})
    return frozenset(str(f).replace("/", " ") for f in cap.get("families", []))


def _update(peer: Any, peer_asn: int, update: dict[str, Any]) -> RouteUpdate:
    announced: list[tuple[IPNetwork, Attributes]] = []
    withdrawn: list[IPNetwork] = []
    for family, by_next_hop in update.get("announce", {}).items():
        if family not in FAMILIES:
            continue
        for next_hop, nlris in by_next_hop.items():
            attrs = _attributes(update.get("attribute", {}), next_hop)
            announced.extend((parse_prefix(n["nlri"]), attrs) for n in nlris)
    for family, nlris in update.get("withdraw", {}).items():
        if family in FAMILIES:
            withdrawn.extend(parse_prefix(n["nlri"]) for n in nlris)
    return RouteUpdate(peer, peer_asn, tuple(announced), tuple(withdrawn))


def _attributes(raw: dict[str, Any], next_hop: str) -> Attributes:
    segments = []
    as_path = raw.get("as-path", {})
    if isinstance(as_path, dict):
        for key in sorted(as_path, key=int):
            segment = as_path[key]
            segments.append(AsPathSegment(str(segment["element"]), tuple(int(a) for a in segment["value"])))
    elif isinstance(as_path, list):  # older encoders: a flat sequence
        segments.append(AsPathSegment("as-sequence", tuple(int(a) for a in as_path)))
    originator = raw.get("originator-id")
    return Attributes(
        next_hop=ipaddress.ip_address(next_hop),
        origin=ORIGINS[str(raw.get("origin", "igp"))],
        as_path=tuple(segments),
        med=int(raw["med"]) if "med" in raw else None,
        local_pref=int(raw["local-preference"]) if "local-preference" in raw else None,
        communities=tuple((int(a), int(b)) for a, b in raw.get("community", [])),
        originator_id=IPv4Address(originator) if originator else None,
        cluster_list=tuple(IPv4Address(c) for c in raw.get("cluster-list", [])),
    )
