"""The BFD process: `python -m routed.bfd.process --control SOCKET`. It owns the UDP sockets
(RFC 5881: single hop, port 3784, TTL 255 sent and required) and runs each session's timers;
the routed daemon configures it and reads its state changes over a unix socket (JSON lines).

A process of its own so that its packets never stop while routed restarts: a restarted daemon
reconnects and sends the same configuration, which leaves running sessions as they are.

Control protocol, one JSON object a line:
  -> {"op": "configure", "sessions": [{"peer": A, "local": A, "interface": "eth1", "interval_ms": 50,
                                      "multiplier": 3,
                                      "auth": {"type": "keyed_sha1", "key_id": 1, "secret": S}}]}
     (the sockets are bound to `interface`, the fabric's: a packet that arrived on any other,
     a workload's veth above all, never reaches them, whatever its source and TTL)
     ("auth" optional; the socket is root's and 0600, as the password files it comes from)
  <- {"ok": true, "sessions": [{"peer": A, "state": "up", "diag": "none", "refused": {}}, ...]}
  <- {"event": "state", "peer": A, "state": "down", "diag": "detection_time_expired"}  (any time)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from routed.bfd.packet import AuthType, Key, PacketError, State, check_auth, decode
from routed.bfd.session import (
    Session,
    admin_down,
    expire,
    expires_at,
    packet,
    receive,
    sent,
    sequence_ok,
    tx_interval,
)
from routed.log import event

log = logging.getLogger("routed.bfd")

CONTROL_PORT = 3784
TTL = 255
SOURCE_PORTS = (49152, 65535)  # RFC 5881 §4
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)  # linux/in.h; CPython does not export it
LOGGED_PER_REASON = 3  # refused packets logged per session and reason; the rest only counted
REPORT_EVERY = 100  # and told to routed every so many
EXPIRY_SLACK = 0.001  # past the detection time, so that the check finds it passed


class Runner:
    """One session: its send socket, its timer task, its state."""

    def __init__(
        self,
        owner: BfdProcess,
        peer: str,
        local: str,
        interface: str,
        interval_ms: int,
        multiplier: int,
        key: Key | None,
    ) -> None:
        self.owner, self.peer, self.local, self.interface = owner, peer, local, interface
        self.settings = (interval_ms, multiplier)
        self.key = key  # changed in place by a configure: the session goes on (or fails auth)
        self.refused: Counter[str] = Counter()
        self.last_refused: str | None = None  # cleared by a packet accepted
        self.session = Session(
            local_discr=random.randint(1, 2**32 - 1),
            interval_us=interval_ms * 1000,
            multiplier=multiplier,
            xmit_auth_seq=random.randint(0, 2**32 - 1),
        )
        self.sock = _send_socket(local, interface)
        self.wake = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"bfd-{peer}")

    def send(self, final: bool = False) -> None:
        data = packet(self.session, final).encode(self.key, self.session.xmit_auth_seq)
        self.session = sent(self.session)
        with contextlib.suppress(OSError):  # no route to it right now: the timers decide
            self.sock.sendto(data, (self.peer, CONTROL_PORT))

    def refuse(self, reason: str) -> None:
        """A packet from the peer discarded: logged the first times, counted always, and told
        to routed now and then (its status says why a session stays down)."""
        count = self.refused[reason] = self.refused[reason] + 1
        self.last_refused = reason
        if count <= LOGGED_PER_REASON:
            log.warning(event("bfd_packet_refused", peer=self.peer, reason=reason, count=count))
        if count <= LOGGED_PER_REASON or count % REPORT_EVERY == 0:
            self.owner.tell({"event": "refused", "peer": self.peer, "reason": reason, "count": count})

    def update(self, session: Session) -> None:
        before, self.session = self.session, session
        if before.state is not session.state:
            self.owner.state_changed(self)
        if tx_interval(session) < tx_interval(before):
            # faster from now on (§6.8.3): the peer's detection time already counts on it, so
            # the packet due at the old, slower pace must not be waited for
            self.wake.set()

    async def _run(self) -> None:
        """Send on the (jittered) transmit timer; wake also when the detection time runs out,
        so a silent peer is declared down then, not at our next packet (up to an interval on)."""
        loop = asyncio.get_running_loop()
        next_tx = loop.time()
        while True:
            now = loop.time()
            self.update(expire(self.session, now))
            if now >= next_tx or self.wake.is_set():
                self.send()
                # §6.8.7: 75-100 % of the interval (75-90 % with a multiplier of 1)
                high = 0.9 if self.session.multiplier == 1 else 1.0
                next_tx = now + tx_interval(self.session) * random.uniform(0.75, high)
            wake_at = next_tx
            down_at = expires_at(self.session)
            if down_at is not None and down_at > now:
                wake_at = min(wake_at, down_at + EXPIRY_SLACK)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wake_at - now)

    def close(self) -> None:
        self.task.cancel()
        self.sock.close()

    def json(self) -> dict[str, Any]:
        s = self.session
        # the peer's AdminDown is not a path failure (RFC 5882 §3.2): said apart from the rest
        admin = s.state is State.DOWN and s.remote_state is State.ADMIN_DOWN
        return {
            "peer": self.peer,
            "state": s.state.name.lower(),
            "diag": "neighbor_admin_down" if admin else s.diag.name.lower(),
            "refused": dict(self.refused),
            "last_refused": self.last_refused,
        }


def _bind_to(sock: socket.socket, interface: str) -> None:
    if interface:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())


def _send_socket(local: str, interface: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in local else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    _bind_to(sock, interface)
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, TTL)
    for _ in range(64):
        try:
            sock.bind((local, random.randint(*SOURCE_PORTS)))
            break
        except OSError:
            continue
    sock.setblocking(False)
    return sock


class BfdProcess:
    def __init__(self, control: Path) -> None:
        self.control = control
        self.runners: dict[str, Runner] = {}
        self.receivers: dict[tuple[str, str], socket.socket] = {}  # by (local address, interface)
        self.clients: set[asyncio.StreamWriter] = set()

    async def serve(self) -> None:
        self.control.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.control.unlink()
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._client, path=str(self.control))
        finally:
            os.umask(old)
        log.info(event("bfd_started", control=self.control, pid=os.getpid()))
        async with server:
            await server.serve_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.add(writer)
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if request.get("op") == "shutdown":  # routed leaves for good (stop --withdraw)
                        for runner in self.runners.values():
                            runner.update(admin_down(runner.session))
                            runner.send()  # AdminDown: peers take it as no failure (§6.8.16)
                        log.warning(event("bfd_shutdown"))
                        os._exit(0)
                    reply = self.configure(request["sessions"]) if request.get("op") == "configure" else None
                except (ValueError, KeyError, TypeError) as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                writer.write(json.dumps(reply or {"ok": False, "error": "unknown op"}).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.clients.discard(writer)
            writer.close()

    def configure(self, wanted: list[dict[str, Any]]) -> dict[str, Any]:
        """Make the sessions exactly these; one whose settings are unchanged keeps running. A
        request with a bad item changes nothing (ValueError, KeyError or TypeError)."""
        parsed = [
            (
                str(item["peer"]),
                str(item["local"]),
                _interface(item.get("interface", "")),
                (int(item["interval_ms"]), int(item["multiplier"])),
                _key(item.get("auth")),
            )
            for item in wanted
        ]
        keep: dict[str, Runner] = {}
        for peer, local, interface, settings, key in parsed:
            runner = self.runners.pop(peer, None)
            if runner is not None and (runner.local, runner.interface, runner.settings) != (
                local,
                interface,
                settings,
            ):
                runner.close()
                runner = None
            if runner is None:
                self._receiver(local, interface)
                runner = Runner(self, peer, local, interface, *settings, key)
                auth = key.type.name.lower() if key else "none"
                log.info(
                    event(
                        "bfd_session",
                        peer=peer,
                        local=local,
                        interface=interface or "any",
                        interval_ms=settings[0],
                        mult=settings[1],
                        auth=auth,
                    )
                )
            runner.key = key
            keep[peer] = runner
        for runner in self.runners.values():
            runner.close()
        self.runners = keep
        # a receive socket no session uses any more goes: an unbound one left from an earlier
        # configuration would still hand packets from any interface to the sessions
        used = {(r.local, r.interface) for r in keep.values()}
        for where in [w for w in self.receivers if w not in used]:
            sock = self.receivers.pop(where)
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        return {"ok": True, "sessions": [r.json() for r in keep.values()]}

    def _receiver(self, local: str, interface: str) -> None:
        if (local, interface) in self.receivers:
            return
        family = socket.AF_INET6 if ":" in local else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _bind_to(sock, interface)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.bind((local, CONTROL_PORT))
        sock.setblocking(False)
        self.receivers[(local, interface)] = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read, sock)

    def _read(self, sock: socket.socket) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                data, ancillary, _, source = sock.recvmsg(512, socket.CMSG_SPACE(4))
                ttl = next((struct.unpack("i", d[:4])[0] for _, _, d in ancillary if len(d) >= 4), None)
                runner = self.runners.get(source[0])
                if runner is None or ttl != TTL:  # RFC 5881 §5: not from a neighbour one hop away
                    continue
                try:
                    received = decode(data)
                except PacketError as exc:
                    runner.refuse(str(exc))
                    continue
                if received.your_discriminator not in (0, runner.session.local_discr):
                    continue
                refused = check_auth(data, received, runner.key)
                if refused is None and not sequence_ok(runner.session, received):
                    refused = "sequence number out of window (replayed or too far ahead)"
                if refused is not None:
                    runner.refuse(refused)
                    continue
                runner.last_refused = None
                session, answer = receive(runner.session, received, asyncio.get_running_loop().time())
                runner.update(session)
                if answer:
                    runner.send(final=True)

    def state_changed(self, runner: Runner) -> None:
        log.warning(event("bfd_state", **runner.json()))
        self.tell({"event": "state", **runner.json()})

    def tell(self, message: dict[str, Any]) -> None:
        line = json.dumps(message).encode() + b"\n"
        for writer in list(self.clients):
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(line)


def _interface(name: Any) -> str:
    text = str(name)
    if len(text) > 15 or "/" in text or "\0" in text:
        raise ValueError(f"{text!r} is not an interface name")
    return text


def _key(auth: Any) -> Key | None:
    if not auth:
        return None
    kind = AuthType[str(auth["type"]).upper().replace("-", "_")]
    secret = str(auth["secret"]).encode()
    if kind is AuthType.NONE or not 1 <= len(secret) <= kind.max_secret:
        raise ValueError(f"{kind.name.lower()} takes a secret of 1-{kind.max_secret} bytes")
    return Key(kind, int(auth.get("key_id", 1)), secret)


def main() -> None:
    parser = argparse.ArgumentParser(description="routed's BFD process (RFC 5880/5881)")
    parser.add_argument("--control", required=True, type=Path)
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    args = parser.parse_args()
    from routed import log as logsetup

    logsetup.setup("info", args.log_format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(BfdProcess(args.control).serve())


if __name__ == "__main__":
    main()
