"""The addresses routed's Docker IPAM has given, on disk so a restarted daemon knows them.

Docker asks for an address (RequestAddress) before it creates the endpoint that will use it,
and gives it back (ReleaseAddress) after the endpoint is gone: between the two, the address
is held here, under an owner name of its own (the IPAM datastore's record, in etcd mode).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from routed import statefile
from routed.docker.protocol import IPAddress

FORMAT_VERSION = 1
Port = Annotated[int, Field(ge=1, le=65535)]


class StoredReservation(statefile.StateModel):
    pool: Annotated[str, Field(min_length=1, max_length=256)]
    owner: Annotated[str, Field(min_length=1, max_length=256)]
    since: float
    aux: bool = False


class StoredMapping(statefile.StateModel):
    model_config = statefile.StateModel.model_config | {"populate_by_name": True}
    host_port: Port = Field(alias="hostPort")
    container_port: Port = Field(alias="containerPort")
    protocol: Literal["tcp", "udp", "sctp"]
    host_ip: IPv4Address | IPv6Address | None = Field(default=None, alias="hostIP")


class ReservationsFile(statefile.StateModel):
    version: int
    addresses: dict[IPv4Address | IPv6Address, StoredReservation] = Field(default_factory=dict)
    published: dict[str, tuple[StoredMapping, ...]] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reservation:
    pool: str
    owner: str  # the IPAM's allocation name: docker-<hex>
    since: float
    aux: bool = False  # a network's --aux-address: held while the network exists


def new_owner() -> str:
    return "docker-" + uuid.uuid4().hex[:12]


@dataclass
class Reservations:
    path: Path
    held: dict[IPAddress, Reservation] = field(default_factory=dict)
    # endpoint id -> its published ports as CNI portMappings: portmap's DEL needs them again
    published: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Reservations:
        try:
            stored = statefile.load(path, FORMAT_VERSION, ReservationsFile)
        except statefile.StateFileError as exc:
            raise statefile.StateFileError(
                f"Docker IPAM state {exc}; fix that entry, or move the file away to start over"
            ) from exc
        if stored is None:
            return cls(path)
        held = {ip: Reservation(r.pool, r.owner, r.since, r.aux) for ip, r in stored.addresses.items()}
        published = {
            endpoint: [m.model_dump(by_alias=True, exclude_none=True, mode="json") for m in mappings]
            for endpoint, mappings in stored.published.items()
        }
        return cls(path, held, published)

    def save(self) -> None:
        data = {
            "version": FORMAT_VERSION,
            "addresses": {
                str(ip): {"pool": r.pool, "owner": r.owner, "since": round(r.since, 3), "aux": r.aux}
                for ip, r in sorted(self.held.items(), key=lambda item: (item[0].version, int(item[0])))
            },
            "published": self.published,
        }
        statefile.save(self.path, data)

    def add(self, ip: IPAddress, pool: str, owner: str, now: float | None = None) -> None:
        self.held[ip] = Reservation(pool, owner, time.time() if now is None else now)
        self.save()

    def pop(self, ip: IPAddress) -> Reservation | None:
        found = self.held.pop(ip, None)
        if found is not None:
            self.save()
        return found

    def publish(self, endpoint: str, ports: list[dict[str, Any]]) -> None:
        self.published[endpoint] = ports
        self.save()

    def unpublish(self, endpoint: str) -> list[dict[str, Any]]:
        ports = self.published.pop(endpoint, [])
        if ports:
            self.save()
        return ports

    def mark_aux(self, ips: set[IPAddress]) -> None:
        changed = False
        for ip in ips:
            current = self.held.get(ip)
            if current is not None and not current.aux:
                self.held[ip] = Reservation(current.pool, current.owner, current.since, aux=True)
                changed = True
        if changed:
            self.save()
