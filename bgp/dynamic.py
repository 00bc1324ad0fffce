"""Clients accepted from a range instead of listed one by one (BIRD's `neighbor range`, FRR's
`bgp listen range`): a reflector of a thousand hosts cannot have them all in its YAML.

ExaBGP accepts a connection from any address of a configured range and makes it a neighbour
of its own (bgp.exabgp.ranges); the first event from that address makes it a Neighbor here,
with its range's settings. A client is sent its table each time its session comes up (ExaBGP
forgets a range's client, and all it was sent, when its session ends) and nothing while it
is away. One that leaves is forgotten, its routes gone, once its graceful-restart time has
run out (at once without graceful restart); one that comes back before is the same Neighbor.

The clients known are written to a file, so that a restarted reflector knows whom to wait
for: its End-of-RIB to each client waits for the others' (bgp.restart), and a client of the
last run that has not reconnected yet is one of them, until the restart time has passed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, MutableMapping
from ipaddress import ip_address
from pathlib import Path

from bgp.clock import Clock, Timer
from bgp.config import NeighborConfig, SpeakerConfig
from bgp.events import event
from bgp.model import IPAddress
from bgp.neighbor import LONG_LIVED_TIMER, RESTART_TIMER, Neighbor

log = logging.getLogger("bgp.speaker")

SAVE_AFTER_S = 1.0  # joins and leaves come in bursts (a fleet starting): one write per burst


class ClientFile:
    """The clients' addresses, one JSON list; an unreadable file is an empty list, logged."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[IPAddress]:
        try:
            raw = json.loads(self.path.read_text())
            return [ip_address(a) for a in raw["clients"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(event("bgp_clients_file_unreadable", path=self.path, reason=exc, action="ignored"))
            return []

    def save(self, addresses: list[IPAddress]) -> None:
        temporary = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps({"clients": sorted(map(str, addresses))}))
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning(event("bgp_clients_file_unwritable", path=self.path, reason=exc))


class DynamicPeers:
    def __init__(
        self,
        cfg: SpeakerConfig,
        neighbors: MutableMapping[IPAddress, Neighbor],
        clock: Clock,
        forget: Callable[[Neighbor], None],
        memory: ClientFile | None = None,
    ) -> None:
        """`forget(neighbor)`: withdraw its routes; this then takes it out of `neighbors`."""
        self.cfg = cfg  # a reload may replace it
        self.neighbors = neighbors  # the speaker's: clients are added to it and taken out
        self.clock = clock
        self._forget = forget
        self.memory = memory
        self._save_timer: Timer | None = None

    def clients(self) -> list[Neighbor]:
        return [n for n in self.neighbors.values() if n.dynamic]

    # --- joins ----------------------------------------------------------------------------

    def admit(self, address: IPAddress) -> Neighbor | None:
        """An event from an address no neighbor has: a new client if a range covers it."""
        neighbor = self._add(address)
        if neighbor is not None:
            log.info(
                event(
                    "bgp_client_joined",
                    peer=address,
                    range=neighbor.config.from_range,
                    clients=len(self.clients()),
                )
            )
            self._save_soon()
        return neighbor

    def _add(self, address: IPAddress) -> Neighbor | None:
        """A Neighbor for a client of a range that covers `address`, if one does."""
        covering = self.cfg.range_for(address)
        if covering is None:
            return None
        neighbor = self.neighbors[address] = Neighbor(covering.neighbor(address), self.clock, pending=True)
        return neighbor

    def restore(self) -> int:
        """At start: the clients of the last run, awaited for our restart time."""
        if self.memory is None:
            return 0
        restored = 0
        for address in self.memory.load():
            neighbor = self._add(address) if address not in self.neighbors else None
            if neighbor is not None:
                neighbor.arm_forget(self.cfg.timers.restart_time, self._expired)
                restored += 1
        if restored:
            log.info(event("bgp_clients_remembered", clients=restored, wait_s=self.cfg.timers.restart_time))
        return restored

    # --- sessions -------------------------------------------------------------------------

    def came_up(self, neighbor: Neighbor) -> None:
        """Its session is up: it is sent everything again (the caller sends it)."""
        neighbor.cancel_forget()
        neighbor.pending, neighbor.adj_rib_out = False, {}

    def went_down(self, neighbor: Neighbor) -> None:
        """Gone with all it was sent; forgotten when its routes' stale time is over."""
        neighbor.pending, neighbor.adj_rib_out = True, {}
        keep = 0.0
        if neighbor.stale_timer in (RESTART_TIMER, LONG_LIVED_TIMER) and neighbor.stale_until is not None:
            keep = max(0.0, neighbor.stale_until - self.clock.time())
        log.info(event("bgp_client_left", peer=neighbor.address, forget_in_s=round(keep, 1)))
        if keep:
            neighbor.arm_forget(keep, self._expired)
        else:
            self.forget(neighbor)

    def channel_changed(self) -> None:
        """Our ExaBGP went or a new one started: every client's session is gone with it. They
        reconnect; those that do not within our restart time are forgotten."""
        for neighbor in self.clients():
            neighbor.pending, neighbor.adj_rib_out = True, {}
            if not neighbor.up and neighbor.forget_at is None:
                neighbor.arm_forget(self.cfg.timers.restart_time, self._expired)

    # --- leaves ---------------------------------------------------------------------------

    def _expired(self, neighbor: Neighbor) -> None:
        if not neighbor.up and self.neighbors.get(neighbor.address) is neighbor:
            self.forget(neighbor)

    def forget(self, neighbor: Neighbor) -> None:
        neighbor.cancel_forget()
        if self.neighbors.get(neighbor.address) is not neighbor:
            return  # forgotten already
        self._forget(neighbor)
        del self.neighbors[neighbor.address]
        log.info(event("bgp_client_forgotten", peer=neighbor.address, clients=len(self.clients())))
        self._save_soon()

    def reconfigure(
        self, cfg: SpeakerConfig, same_session: Callable[[NeighborConfig, NeighborConfig], bool]
    ) -> list[Neighbor]:
        """A reload: the clients whose range went, or whose session settings changed
        (`same_session(old, new)` says, as ExaBGP will: its reload closes those sessions, and
        the caller forgets them). The rest take their range's new settings (a description,
        an export mode, a limit) and keep their sessions."""
        self.cfg = cfg
        gone = []
        for neighbor in self.clients():
            covering = cfg.range_for(neighbor.address)
            config = covering.neighbor(neighbor.address) if covering is not None else None
            if config is None or not same_session(neighbor.config, config):
                gone.append(neighbor)
            else:
                neighbor.config = config
        return gone

    # --- the file ---------------------------------------------------------------------------

    def _save_soon(self) -> None:
        if self.memory is not None and self._save_timer is None:
            self._save_timer = self.clock.call_later(SAVE_AFTER_S, self.save)

    def save(self) -> None:
        self._save_timer = None
        if self.memory is not None:
            self.memory.save([n.address for n in self.clients()])

    def stop(self) -> None:
        if self._save_timer is not None:
            self._save_timer.cancel()
            self.save()
