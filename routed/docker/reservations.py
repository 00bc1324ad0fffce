"""The addresses routed's Docker IPAM has given, on disk so a restarted daemon knows them.

Docker asks for an address (RequestAddress) before it creates the endpoint that will use it,
and gives it back (ReleaseAddress) after the endpoint is gone: between the two, the address
is held here, under an owner name of its own (the IPAM datastore's record, in etcd mode).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from routed import statefile
from routed.docker.protocol import IPAddress

FORMAT_VERSION = 1


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
            raw = statefile.load(path, FORMAT_VERSION)
        except statefile.StateFileError as exc:
            raise statefile.StateFileError(f"Docker IPAM state {exc}; move it away to start over") from exc
        if raw is None:
            return cls(path)
        held = {
            ip_address(ip): Reservation(
                item["pool"], item["owner"], float(item["since"]), bool(item.get("aux"))
            )
            for ip, item in raw.get("addresses", {}).items()
        }
        return cls(path, held, dict(raw.get("published", {})))

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
