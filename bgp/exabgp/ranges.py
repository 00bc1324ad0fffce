"""ExaBGP changes for neighbours accepted from a range (`neighbor 10.1.0.0/16 { passive; }`),
applied by bgp.exabgp.launch; routed's side is bgp.dynamic. Each is meant for upstream
(docs/upstream/exabgp/0009).

`generated_neighbors`: the listener makes a client's neighbour with copy.copy() of the
range's, and a Neighbor is a dict whose session state lives in attributes, so every client of
a range shared one outgoing RIB, one End-of-RIB queue, one message queue, one counter and
one uid: a route sent to one client went to all of them. A generated neighbour now gets its
own, and its own RIB under its own name (dropped from RIB's cache when its session ends, so a
client that comes back starts clean and a range's churn does not grow the cache).

`commands_reach_clients`: an API command (announce, withdraw, eor, refresh, operational)
matched a range's client by name but was injected only into configured neighbours: nothing
routed sent a client ever reached it. The generated neighbours are now looked up too.

`reload_keeps_clients`: a reload (SIGUSR1) removed every peer whose key was not a configured
neighbour's, which is every generated one: adding one listed peer dropped every client of
every range. A generated peer now stays when its range is still configured the same, and
is removed (its session closed) when its range went or changed.

`md5_on_ranges`: the listening socket was given the range's MD5 key for the range's first
address only (TCP_MD5SIG takes one address), so a client of a range with a password could
never connect. The key is now also set for the whole prefix (TCP_MD5SIG_EXT with
TCP_MD5SIG_FLAG_PREFIX, Linux 4.13).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import socket
import struct
from collections import Counter, deque
from typing import Any

ORIGIN = "_routed_range"  # a generated neighbour: the range neighbour it was made from
GENERATED: dict[str, Any] = {}  # name -> a range's client's neighbour, while its peer lives

TCP_MD5SIG_EXT = 32  # linux/tcp.h
TCP_MD5SIG_FLAG_PREFIX = 1
TCP_MD5SIG_MAXKEYLEN = 80


def generated_neighbors(neighbor_class: Any, peer_class: Any) -> None:
    import exabgp.reactor.listener as listener  # type: ignore[import-untyped]
    from exabgp.rib import RIB  # type: ignore[import-untyped]

    uids = itertools.count(1_000_000)  # apart from the configured neighbours' own counter

    def copy_with_own_state(self: Any) -> Any:
        new = neighbor_class.__new__(neighbor_class)
        dict.update(new, self)
        new.__dict__.update(self.__dict__)
        new["capability"] = dict(self["capability"])
        new.eor, new.messages, new.refresh = deque(), deque(), deque()
        new.asm, new.counter = {}, Counter()
        new.changes = list(self.changes)
        new._families, new._nexthop, new._addpath = (
            list(self._families),
            list(self._nexthop),
            list(self._addpath),
        )
        new.uid = str(next(uids))
        new.rib = None  # made once the listener has given it its addresses (peer_for)
        new.__dict__[ORIGIN] = self
        return new

    neighbor_class.__copy__ = copy_with_own_state
    make_peer = listener.Peer

    def peer_for(neighbor: Any, reactor: Any) -> Any:
        if neighbor.generated and neighbor.rib is None:
            RIB._cache.pop(neighbor.name(), None)  # a client back from before starts clean
            neighbor.make_rib()
            GENERATED[neighbor.name()] = neighbor
        return make_peer(neighbor, reactor)

    listener.Peer = peer_for
    reset = peer_class._reset

    def reset_forgetting_generated(self: Any, message: str = "", error: str = "") -> None:
        reset(self, message, error)
        neighbor = self.neighbor
        if neighbor.generated and self.generator is False and neighbor.rib is not None:
            neighbor.rib.uncache()
            name = neighbor.name()
            if GENERATED.get(name) is neighbor:
                del GENERATED[name]

    peer_class._reset = reset_forgetting_generated


def commands_reach_clients(configuration_class: Any) -> None:
    """Each inject_* again over the generated neighbours the command matched, as if they were
    configured (its result combined as its own: any injected, or none refused)."""
    combine = {
        "inject_change": lambda a, b: a or b,
        "inject_eor": lambda a, b: a or b,
        "inject_operational": lambda a, b: a and b,
        "inject_refresh": lambda a, b: a and b,
    }
    for method, either in combine.items():
        original = getattr(configuration_class, method)

        def with_clients(
            self: Any, peers: Any, what: Any, _original: Any = original, _either: Any = either
        ) -> Any:
            result = _original(self, peers, what)
            clients = {
                name: GENERATED[name] for name in peers if name in GENERATED and name not in self.neighbors
            }
            if not clients:
                return result
            configured = self.neighbors
            self.neighbors = clients
            try:
                return _either(result, _original(self, peers, what))
            finally:
                self.neighbors = configured

        setattr(configuration_class, method, with_clients)


def reload_keeps_clients(reactor_class: Any) -> None:
    reload = reactor_class.reload

    def reload_keeping(self: Any) -> Any:
        clients = {key: peer for key, peer in self._peers.items() if peer.neighbor.generated}
        for key in clients:
            del self._peers[key]
        try:
            return reload(self)
        finally:
            configured = self.configuration.neighbors
            for key, peer in clients.items():
                origin = peer.neighbor.__dict__.get(ORIGIN)
                now = configured.get(origin.name()) if origin is not None else None
                if now is None or now != origin:
                    peer.remove()  # its range went or changed: its session closes
                self._peers.setdefault(key, peer)

    reactor_class.reload = reload_keeping


def md5_prefix_option(address: str, prefix_length: int, key: bytes) -> bytes:
    """struct tcp_md5sig for TCP_MD5SIG_EXT: the key for every address of address/prefix_length."""
    if ":" in address:
        sockaddr = struct.pack(
            "HHI16sI", socket.AF_INET6, 0, 0, socket.inet_pton(socket.AF_INET6, address), 0
        )
    else:
        sockaddr = struct.pack("HH4s", socket.AF_INET, 0, socket.inet_pton(socket.AF_INET, address))
    sockaddr = sockaddr.ljust(128, b"\0")  # __kernel_sockaddr_storage
    return sockaddr + struct.pack(
        f"BBHi{TCP_MD5SIG_MAXKEYLEN}s", TCP_MD5SIG_FLAG_PREFIX, prefix_length, len(key), 0, key
    )


def md5_key(password: str, base64_encoded: Any) -> bytes:
    if base64_encoded is True:
        try:
            return base64.b64decode(password, validate=True)
        except (binascii.Error, ValueError):
            pass
    return password.encode()


def md5_on_ranges(listener_class: Any) -> None:
    listen = listener_class._listen

    def listen_with_prefix(
        self: Any, local_ip: Any, peer_ip: Any, local_port: int, use_md5: Any, md5_base64: Any, ttl_in: Any
    ) -> Any:
        result = listen(self, local_ip, peer_ip, local_port, use_md5, md5_base64, ttl_in)
        mask = getattr(peer_ip, "mask", None)
        if not use_md5 or mask is None:
            return result
        length, full = int(mask), (32 if peer_ip.ipv4() else 128)
        if length >= full:
            return result
        option = md5_prefix_option(peer_ip.top(), length, md5_key(use_md5, md5_base64))
        for sock, (local, port, _, _) in list(self._sockets.items()):
            if local == local_ip.top() and port == local_port:
                sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG_EXT, option)
        return result

    listener_class._listen = listen_with_prefix
