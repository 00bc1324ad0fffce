"""bgp's own config records for unit tests, written in a line each (no YAML, no pydantic)."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_network
from typing import Any

from bgp.config import NeighborConfig, NeighborRange, PeerKind, RestartTimers, SpeakerConfig

ASN = 64512


def neighbor(address: str, kind: str = "reflector", **fields: Any) -> NeighborConfig:
    fields.setdefault("asn", ASN if kind != "ebgp" else 65001)
    return NeighborConfig(address=ip_address(address), kind=PeerKind(kind), **fields)


def speaker(*neighbors: NeighborConfig, me: str = "10.0.0.11", **fields: Any) -> SpeakerConfig:
    """A node (or, with reflector=True, a reflector) at `me` in 10.65.0.0/16."""
    if fields.get("reflector"):
        fields.setdefault("cluster_id", IPv4Address(me))
    fields.setdefault("timers", RestartTimers())
    return SpeakerConfig(
        name=fields.pop("name", "h1"),
        asn=ASN,
        router_id=IPv4Address(me),
        fabric_address=ip_address(me),
        pools=fields.pop("pools", (ip_network("10.65.0.0/16"),)),
        neighbors=neighbors,
        **fields,
    )


def clients(prefix: str, **fields: Any) -> NeighborRange:
    """A range of clients (a reflector's `peers: - {range: ..., kind: client}`)."""
    network = ip_network(prefix)
    return NeighborRange(network, neighbor(str(network.network_address), "client", **fields))
