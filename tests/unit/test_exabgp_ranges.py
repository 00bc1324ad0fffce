"""bgp.exabgp.ranges on ExaBGP's own objects and a real kernel socket: a range's clients do not
share their RIB and queues, a reload keeps the clients of an unchanged range, and a range's
MD5 key lets a client anywhere in the prefix connect (docs/upstream/exabgp/0009)."""

from __future__ import annotations

import copy
import errno
import socket
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from exabgp.protocol.ip import IP  # type: ignore[import-untyped]

from bgp.exabgp import ranges
from bgp.exabgp.config import render_config
from tests.support.bgpconfig import clients, speaker


def range_neighbor(tmp_path: Path, hold_time: int = 90) -> Any:
    """The neighbour ExaBGP's configuration makes of routed's `neighbor 10.1.0.0/16 { ... }`."""
    from exabgp.configuration.configuration import Configuration  # type: ignore[import-untyped]
    from exabgp.environment import getenv  # type: ignore[import-untyped]
    from exabgp.logger import log  # type: ignore[import-untyped]

    log.init(getenv())
    cfg = speaker(me="10.0.0.1", reflector=True, ranges=(clients("10.1.0.0/16", hold_time=hold_time),))
    path = tmp_path / f"exabgp-{hold_time}.conf"
    path.write_text(render_config(cfg, "/bin/true"))
    configuration = Configuration([str(path)])
    assert configuration.reload(), configuration.error
    (neighbor,) = configuration.neighbors.values()
    assert neighbor.range_size == 65536
    return neighbor


def generated(template: Any, address: str) -> Any:
    """What ExaBGP's listener does with a connection from `address` (listener.new_connections)."""
    client = copy.copy(template)
    client.range_size, client.generated = 1, True
    client["local-address"], client["peer-address"] = IP.create("10.0.0.1"), IP.create(address)
    return client


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> None:
    import exabgp.reactor.listener as listener  # type: ignore[import-untyped]
    from exabgp.bgp.neighbor import Neighbor  # type: ignore[import-untyped]
    from exabgp.reactor.peer import Peer  # type: ignore[import-untyped]

    for cls, name in ((Neighbor, "__copy__"), (Peer, "_reset"), (listener, "Peer")):
        monkeypatch.setattr(cls, name, getattr(cls, name, None), raising=False)
    ranges.generated_neighbors(Neighbor, Peer)


def test_each_client_of_a_range_has_its_own_rib_and_queues(tmp_path: Path, patched: None) -> None:
    import exabgp.reactor.listener as listener

    template = range_neighbor(tmp_path)
    one, two = generated(template, "10.1.0.5"), generated(template, "10.1.0.6")
    listener.Peer(one, SimpleNamespace()), listener.Peer(two, SimpleNamespace())
    assert one.rib is not two.rib and one.rib is not template.rib
    assert one.rib.outgoing is not two.rib.outgoing
    assert one.eor is not two.eor and one.messages is not two.messages and one.counter is not two.counter
    assert one.uid != two.uid != template.uid
    assert one.rib.name.startswith("neighbor 10.1.0.5 ")
    one.eor.append("ipv4 unicast")
    assert not two.eor and not template.eor


def test_a_client_back_from_before_starts_with_an_empty_rib(tmp_path: Path, patched: None) -> None:
    import exabgp.reactor.listener as listener
    from exabgp.rib import RIB  # type: ignore[import-untyped]

    template = range_neighbor(tmp_path)
    first = generated(template, "10.1.0.5")
    listener.Peer(first, SimpleNamespace())
    again = generated(template, "10.1.0.5")
    listener.Peer(again, SimpleNamespace())
    assert again.rib.outgoing is not first.rib.outgoing
    assert RIB._cache[again.rib.name] is again.rib


class FakeReactor:
    """Reactor.reload's part that matters here: peers not configured are told to go."""

    def __init__(self, neighbors: dict[str, Any]) -> None:
        self._peers: dict[str, Any] = {}
        self.configuration = SimpleNamespace(neighbors=neighbors)
        self.next_neighbors = neighbors

    def reload(self) -> bool:
        self.configuration.neighbors = self.next_neighbors
        for key, peer in self._peers.items():
            if key not in self.configuration.neighbors:
                peer.remove()
        return True


class FakePeer:
    def __init__(self, neighbor: Any) -> None:
        self.neighbor, self.removed = neighbor, False

    def remove(self) -> None:
        self.removed = True


def test_a_reload_keeps_the_clients_of_an_unchanged_range_and_closes_those_of_a_changed_one(
    tmp_path: Path, patched: None
) -> None:
    template = range_neighbor(tmp_path)

    class Reactor(FakeReactor):
        pass

    ranges.reload_keeps_clients(Reactor)
    reactor = Reactor({template.name(): template})
    client = FakePeer(generated(template, "10.1.0.5"))
    reactor._peers["client"] = client
    reactor.next_neighbors = {template.name(): range_neighbor(tmp_path)}  # read again, the same
    reactor.reload()
    assert not client.removed and reactor._peers["client"] is client
    reactor.next_neighbors = {template.name(): range_neighbor(tmp_path, hold_time=30)}
    reactor.reload()
    assert client.removed  # a new hold time: its session closes, it connects again with it
    reactor.next_neighbors = {}
    other = FakePeer(generated(template, "10.1.0.6"))
    reactor._peers["other"] = other
    reactor.reload()
    assert other.removed  # its range is gone


def test_the_md5_option_for_a_prefix_is_linux_struct_tcp_md5sig() -> None:
    option = ranges.md5_prefix_option("10.1.0.0", 16, b"s3cret")
    assert len(option) == 128 + 1 + 1 + 2 + 4 + 80
    family, port, address = struct.unpack_from("HH4s", option)
    assert (family, port, socket.inet_ntoa(address)) == (socket.AF_INET, 0, "10.1.0.0")
    flags, length, keylen, ifindex = struct.unpack_from("BBHi", option, 128)
    assert (flags, length, keylen, ifindex) == (ranges.TCP_MD5SIG_FLAG_PREFIX, 16, 6, 0)
    assert option[136:142] == b"s3cret"
    six = ranges.md5_prefix_option("fd00:1::", 64, b"k")
    assert struct.unpack_from("H", six)[0] == socket.AF_INET6 and six[129] == 64
    assert ranges.md5_key("czNjcmV0", True) == b"s3cret" and ranges.md5_key("plain", None) == b"plain"


def connects(port: int, key: bytes | None) -> bool:
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.settimeout(1.0)
    try:
        if key is not None:
            sockaddr = struct.pack("HH4s", socket.AF_INET, 0, socket.inet_aton("127.0.0.1")).ljust(128, b"\0")
            client.setsockopt(
                socket.IPPROTO_TCP, 14, sockaddr + struct.pack("2xH4x80s", len(key), key)
            )  # TCP_MD5SIG, one address
        client.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        client.close()


def test_a_key_for_the_prefix_lets_any_client_in_it_connect_and_no_other() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            server.setsockopt(
                socket.IPPROTO_TCP, ranges.TCP_MD5SIG_EXT, ranges.md5_prefix_option("127.0.0.0", 8, b"s3cret")
            )
        except OSError as exc:  # a kernel without TCP-MD5: nothing here can work
            assert exc.errno in (errno.ENOPROTOOPT, errno.EINVAL), exc
            pytest.fail(f"this kernel refuses TCP_MD5SIG_EXT: {exc}")
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        assert connects(port, b"s3cret")
        assert not connects(port, b"wrong")
        assert not connects(port, None)
    finally:
        server.close()
