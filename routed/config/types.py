"""Scalar types of the node config: addresses, prefixes, AS numbers, ids, and the base model."""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# 0 is reserved and 23456 is AS_TRANS (RFC 6793); neither may name a real AS.
RESERVED_ASNS = {0, 23456, 65535, 4294967295}
WORKLOAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class Role(StrEnum):
    NODE = "node"
    REFLECTOR = "reflector"


class PeerKind(StrEnum):
    REFLECTOR = "reflector"  # we are its client
    CLIENT = "client"  # we reflect to it (role: reflector only)
    MESH = "mesh"  # iBGP full-mesh neighbour
    NONCLIENT = "nonclient"  # iBGP peer of a reflector that is not its client (another reflector)
    EBGP = "ebgp"  # another AS, e.g. a top-of-rack router


IBGP_KINDS = {PeerKind.REFLECTOR, PeerKind.CLIENT, PeerKind.MESH, PeerKind.NONCLIENT}


def _parse_cidr(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a CIDR; write an IPv4 or IPv6 prefix such as 10.65.0.0/16 or fd00:65::/48"
            ) from exc
        raise ValueError(f"{value!r} has host bits set; did you mean {loose}?") from exc


def _parse_ip(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address; write e.g. 10.0.0.11 or fd00::11") from exc
    return value


def _parse_ipv4(value: Any) -> Any:
    parsed = _parse_ip(value)
    if isinstance(parsed, IPv6Address):
        raise ValueError(f"{value!r} is IPv6; this field is a 32-bit id written as IPv4")
    if isinstance(parsed, int):
        # A bare integer would be accepted by ipaddress but is almost always a slip.
        raise ValueError(f"{value!r} must be written as a dotted IPv4 address, e.g. 10.0.0.11")
    return parsed


def _mesh_mode(value: Any) -> Any:
    # YAML 1.1 reads a bare `off` as false; accept it for what the user meant.
    if value is False:
        return "off"
    if value is True:
        raise ValueError("write `mesh: full` or `mesh: off`")
    return value


Cidr = Annotated[IPNetwork, BeforeValidator(_parse_cidr)]
Address = Annotated[IPAddress, BeforeValidator(_parse_ip)]
RouterId = Annotated[IPv4Address, BeforeValidator(_parse_ipv4)]
Asn = Annotated[int, Field(ge=1, le=4294967294, strict=True)]
HoldTime = Annotated[int, Field(strict=True)]


def _check_asn(value: int) -> int:
    if value in RESERVED_ASNS:
        raise ValueError(f"AS {value} is reserved; pick a private AS (64512-65534 or 4200000000-4294967294)")
    return value


def _check_hold_time(value: int) -> int:
    if value != 0 and not 3 <= value <= 65535:
        raise ValueError(f"hold time {value} is not allowed; use 0 (no keepalives) or 3-65535 seconds")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
