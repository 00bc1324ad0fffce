"""A Speaker with no ExaBGP and a fake clock: events go in as bgp.model records, and what it
would tell ExaBGP and the FIB comes out, so its rules are tested without a process or a lab."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path

from bgp.config import SpeakerConfig
from bgp.decision import Selection
from bgp.exabgp.process import Channel
from bgp.model import (
    Attributes,
    EndOfRib,
    Event,
    GracefulRestartCapability,
    IPNetwork,
    PeerOpen,
    PeerState,
    RouteUpdate,
)
from bgp.speaker import Speaker
from tests.support.clock import FakeClock


class RecordingSink:
    """bgp.sink.RouteSink: the best paths as the FIB would have them."""

    def __init__(self) -> None:
        self.routes: dict[IPNetwork, Selection] = {}
        self.ready = 0

    def best_paths(self, changes: Mapping[IPNetwork, Selection | None]) -> None:
        for prefix, selection in changes.items():
            if selection is None:
                self.routes.pop(prefix, None)
            else:
                self.routes[prefix] = selection

    def bgp_ready(self) -> None:
        self.ready += 1


class NullWriter:
    def close(self) -> None: ...

    def is_closing(self) -> bool:
        return False


class Harness:
    def __init__(
        self,
        cfg: SpeakerConfig,
        runtime_dir: Path,
        *,
        connected: bool = True,
        clients_file: Path | None = None,
    ) -> None:
        """`runtime_dir`: where ExaBGP's config would be written (a reload writes it);
        `clients_file`: where a range's clients are remembered (restored at start)."""
        self.clock = FakeClock()
        self.sink = RecordingSink()
        self.config_file = runtime_dir / "exabgp.conf"
        self.clients: list[list[str]] = []  # what the speaker told the node, each time
        self.speaker = Speaker(
            cfg,
            self.sink,
            runtime_dir,
            clock=self.clock,
            clients_file=clients_file,
            clients_changed=lambda clients: self.clients.append(sorted(map(str, clients))),
        )
        self.speaker.dynamic.restore()
        self.speaker.restart.start()
        if connected:
            self.connect()

    def connect(self) -> None:
        """A new ExaBGP channel, as the bridge would report one."""
        # nothing is read from it here (the tests feed events): no StreamReader, which would
        # want an event loop in tests that have none
        self.speaker.exabgp.pump.attach(Channel(None, NullWriter()))  # type: ignore[arg-type]
        self.speaker.channel_opened()

    def lose_channel(self) -> None:
        self.speaker.exabgp.pump.channel = None
        self.speaker.channel_lost()

    def sent(self) -> list[str]:
        """The commands queued for ExaBGP since the last call."""
        return self.speaker.exabgp.pump.take_queued()

    def feed(self, *events: Event) -> None:
        self.speaker.events(events)

    # events, as ExaBGP reports them
    @staticmethod
    def up(peer: str, asn: int = 64512) -> PeerState:
        return PeerState(ip_address(peer), asn, "up")

    @staticmethod
    def down(peer: str, reason: str = "TCP connection closed", asn: int = 64512) -> PeerState:
        return PeerState(ip_address(peer), asn, "down", reason)

    @staticmethod
    def opened(peer: str, restart_time: int | None = 120, restarted: bool = False) -> PeerOpen:
        capability = (
            None
            if restart_time is None
            else GracefulRestartCapability(restart_time, restarted, frozenset({4, 6}))
        )
        return PeerOpen(ip_address(peer), IPv4Address(peer), capability)

    @staticmethod
    def routes(peer: str, *prefixes: str, next_hop: str | None = None, asn: int = 64512) -> RouteUpdate:
        attrs = Attributes(next_hop=ip_address(next_hop or peer))
        return RouteUpdate(ip_address(peer), asn, tuple((ip_network(p), attrs) for p in prefixes))

    @staticmethod
    def withdrawn(peer: str, *prefixes: str, asn: int = 64512) -> RouteUpdate:
        return RouteUpdate(ip_address(peer), asn, (), tuple(ip_network(p) for p in prefixes))

    @staticmethod
    def eor(peer: str, family: str = "ipv4 unicast") -> EndOfRib:
        return EndOfRib(ip_address(peer), family)

    def installed(self) -> set[str]:
        return {str(p) for p in self.sink.routes}
