"""A pool entry: the CIDR workloads take addresses from, and how their traffic leaves the fabric.

`pools:` takes a bare CIDR (`- 10.65.0.0/16`, every option at its default) or a mapping
(`- {cidr: 10.65.0.0/16, nat_outgoing: false}`).

nat_outgoing defaults to on for IPv4 and off for IPv6, as Calico's default pool does and as
Docker's bridge behaves: a container reaches the world beyond the fabric out of the box, on a
laptop, a VM or a cloud network whose routers will never learn the pools. Where the routers do
learn them (eBGP to a ToR, `export:`), turn it off and the world sees the containers' own
addresses. IPv6 is opt-in because IPv6 pools are meant to be routed (global or ULA prefixes
announced upstream); NAT66 hides that, breaks end-to-end addressing and PMTU for nothing when the
prefix is reachable, so it is there only for the one who asks (a ULA pool on a laptop).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from routed.config.types import Address, Cidr, Strict, _parse_cidr

PORT_RANGE = re.compile(r"^\s*(\d{1,5})\s*[-:]\s*(\d{1,5})\s*$")


def _port_range(value: Any) -> Any:
    """`20000-29999` (or Calico's `20000:29999`) as (20000, 29999)."""
    if value is None or isinstance(value, tuple | list):
        return value
    if isinstance(value, int):
        return (value, value)
    found = PORT_RANGE.match(str(value))
    if not found:
        raise ValueError(f"{value!r} is not a port range; write FIRST-LAST, e.g. 20000-29999")
    return (int(found[1]), int(found[2]))


PortRange = tuple[Annotated[int, Field(ge=1, le=65535)], Annotated[int, Field(ge=1, le=65535)]]


class Pool(Strict):
    cidr: Cidr
    # source-NAT traffic from this pool to anywhere outside every pool, the fabric and the
    # exclusions; None: on for IPv4, off for IPv6 (NAT66 only when asked for)
    nat_outgoing: bool | None = None
    # the source address the outside sees (SNAT), instead of the leaving interface's (masquerade)
    nat_outgoing_address: Address | None = None
    # the source ports NAT may use (TCP and UDP), e.g. 20000-29999
    nat_outgoing_ports: Annotated[PortRange | None, BeforeValidator(_port_range)] = None
    # destinations that keep the container's address besides the pools and the fabric
    # (other hosts of the cluster on routed subnets, a monitoring network, ...)
    nat_outgoing_exclude: tuple[Cidr, ...] = ()

    @property
    def nats(self) -> bool:
        return self.cidr.version == 4 if self.nat_outgoing is None else self.nat_outgoing

    @model_validator(mode="after")
    def _options(self) -> Pool:
        version = self.cidr.version
        if self.nat_outgoing_address is not None and self.nat_outgoing_address.version != version:
            raise ValueError(
                f"nat_outgoing_address {self.nat_outgoing_address} is IPv{self.nat_outgoing_address.version} "
                f"but the pool is IPv{version}; give an address of the pool's family"
            )
        if self.nat_outgoing_address is not None and self.nat_outgoing_address in self.cidr:
            raise ValueError(
                f"nat_outgoing_address {self.nat_outgoing_address} is inside the pool; "
                "give one of the host's own addresses"
            )
        if self.nat_outgoing_ports is not None and self.nat_outgoing_ports[0] > self.nat_outgoing_ports[1]:
            first, last = self.nat_outgoing_ports
            raise ValueError(f"nat_outgoing_ports {first}-{last} runs backwards; write {last}-{first}")
        options = [
            name
            for name in ("nat_outgoing_address", "nat_outgoing_ports", "nat_outgoing_exclude")
            if getattr(self, name)
        ]
        if options and not self.nats:
            why = "is false" if self.nat_outgoing is False else "is off by default for IPv6 pools"
            raise ValueError(
                f"{', '.join(options)} given but nat_outgoing {why}; set nat_outgoing: true or drop them"
            )
        for excluded in self.nat_outgoing_exclude:
            if excluded.version != version:
                raise ValueError(
                    f"nat_outgoing_exclude {excluded} is IPv{excluded.version} but the pool is "
                    f"IPv{version}; list it under a pool of its family"
                )
        return self

    def __str__(self) -> str:
        return str(self.cidr)


def _pool_shorthand(value: Any) -> Any:
    """A bare CIDR is a pool with every option at its default."""
    if isinstance(value, str):
        return {"cidr": _parse_cidr(value)}  # a bad one is reported at the entry, not at .cidr
    return value


PoolEntry = Annotated[Pool, BeforeValidator(_pool_shorthand)]
