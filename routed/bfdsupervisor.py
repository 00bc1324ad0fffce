"""The daemon's side of the BFD process (routed.bfd.process): start it unless one already
answers (it outlives routed's restarts: that is its purpose), configure it with the peers
that have `bfd:`, and hand its state changes to the speaker."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from routed.apiserver import answers
from routed.config import NodeConfig
from routed.config.derived import resolved_peers
from routed.config.peering import BfdAuth, PeerSettings
from routed.config.reload import ReloadPlan
from routed.config.types import IPAddress
from routed.detached import start_detached
from routed.log import event

log = logging.getLogger("routed.bfd")

Listener = Callable[[str, str, str], None]  # (peer, state, diag)


def sessions(cfg: NodeConfig, clients: Iterable[IPAddress] = ()) -> list[dict[str, Any]]:
    """A session per peer with `bfd:`, and per client of a range or of the registry whose
    entry has `bfd:` (`clients`: those the speaker has now)."""
    peers: list[tuple[IPAddress, PeerSettings]] = [(p.address, p) for p in resolved_peers(cfg)]
    ranges, registry = cfg.peer_ranges, cfg.peer_registry
    for address in clients:
        covering = next(
            (r for r in ranges if address.version == r.range.version and address in r.range), None
        )
        settings = covering or registry
        if settings is not None:
            peers.append((address, settings))
    return [
        {
            "peer": str(address),
            "local": str(cfg.fabric.address_for(address.version) or cfg.fabric.address),
            "interface": cfg.fabric.interface,
            "interval_ms": peer.bfd.interval_ms,
            "multiplier": peer.bfd.multiplier,
            **({"auth": _auth(peer.bfd.auth)} if peer.bfd.auth else {}),
        }
        for address, peer in peers
        if peer.bfd is not None
    ]


def _auth(auth: BfdAuth) -> dict[str, Any]:
    return {"type": auth.type.value, "key_id": auth.key_id, "secret": auth.secret()}


class BfdSupervisor:
    def __init__(self, cfg: NodeConfig, on_state: Listener, log_format: str = "text") -> None:
        self.cfg = cfg
        self.control = Path(cfg.api.socket).parent / "bfd.sock"
        self.on_state = on_state
        self.log_format = log_format
        self.states: dict[str, str] = {}
        self.refused: dict[str, dict[str, int]] = {}  # peer -> reason -> packets, as last told
        self.last_refused: dict[str, str | None] = {}  # peer -> why its last packet was refused
        self._writer: asyncio.StreamWriter | None = None
        self._configured = asyncio.Event()  # some peer has bfd: (no process otherwise)
        self._stopping = False
        self.dynamic: list[IPAddress] = []  # a range's clients connected now (bgp.dynamic)
        self.registered: list[IPAddress] = []  # the registry's clients (routed.registry)
        self._configure_soon: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        """Keep a BFD process configured and listened to, starting it again if it goes."""
        while not self._stopping:
            if not sessions(self.cfg, self.clients):
                self._configured.clear()
                await self._configured.wait()
            try:
                reader, self._writer = await self._connect()
                await self._configure()
                while line := await reader.readline():
                    self._handle(json.loads(line))
            except (OSError, ValueError) as exc:
                log.error(event("bfd_process_lost", reason=exc, action="starting it again"))
            if self._stopping:
                return
            self._writer = None
            await asyncio.sleep(1)

    def status(self) -> dict[str, Any]:
        """Per peer with bfd: its session's state and the packets refused, by reason."""
        with_bfd = (str(session["peer"]) for session in sessions(self.cfg, self.clients))
        return {
            peer: {
                "state": self.states.get(peer),
                "refused": self.refused.get(peer, {}),
                "last_refused": self.last_refused.get(peer),
            }
            for peer in with_bfd
        }

    async def reconfigure(self, cfg: NodeConfig, plan: ReloadPlan) -> None:
        self.cfg = cfg
        if sessions(cfg, self.clients):
            self._configured.set()
        if self._writer is not None:
            await self._configure()

    @property
    def clients(self) -> list[IPAddress]:
        return [*self.dynamic, *self.registered]

    def set_clients(self, clients: list[IPAddress]) -> None:
        """The speaker's clients of ranges changed."""
        self.dynamic = clients
        self._reconfigure_soon()

    def set_registered(self, clients: list[IPAddress]) -> None:
        """The registry's clients changed."""
        self.registered = clients
        self._reconfigure_soon()

    def _reconfigure_soon(self, delay: float = 0.2) -> None:
        """Configure the process once the burst is over (a fleet joining is hundreds of
        changes, each a whole configuration)."""
        if self._configure_soon is None:
            self._configure_soon = asyncio.get_running_loop().call_later(delay, self._configure_clients)

    def _configure_clients(self) -> None:
        self._configure_soon = None
        if sessions(self.cfg, self.clients):
            self._configured.set()
        if self._writer is not None:
            task = asyncio.get_running_loop().create_task(self._configure(), name="bfd-clients")
            task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        """routed leaves for good: the BFD process says AdminDown to every peer and exits."""
        self._stopping = True
        if self._writer is not None:
            self._writer.write(b'{"op": "shutdown"}\n')
            await self._writer.drain()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not await answers(self.control):
            await start_detached(
                "routed.bfd.process",
                ["--control", str(self.control), "--log-format", self.log_format],
                self.control,
                "the BFD process",
            )
            log.info(event("bfd_process_started", control=self.control))
        return await asyncio.open_unix_connection(str(self.control))

    async def _configure(self) -> None:
        assert self._writer is not None
        configure = {"op": "configure", "sessions": sessions(self.cfg, self.clients)}
        self._writer.write(json.dumps(configure).encode() + b"\n")
        await self._writer.drain()

    def _handle(self, message: dict[str, Any]) -> None:
        if "sessions" in message:  # the answer to a configure: where each session stands now
            for item in message["sessions"]:
                self.states[item["peer"]] = item["state"]
                self._note_refusals(item)
            return
        if message.get("event") == "refused":
            peer, reason = str(message["peer"]), str(message["reason"])
            self.refused.setdefault(peer, {})[reason] = int(message["count"])
            self.last_refused[peer] = reason
            return
        if message.get("event") == "state":
            peer, state = str(message["peer"]), str(message["state"])
            self.states[peer] = state
            self._note_refusals(message)
            try:
                self.on_state(peer, state, str(message.get("diag", "")))
            except Exception:  # the speaker's bug must not cost us BFD
                log.exception(event("bfd_state_handling_failed", peer=peer, state=state))

    def _note_refusals(self, session: dict[str, Any]) -> None:
        """A session's refusal counts and last reason, as the process reports them with it."""
        peer = str(session["peer"])
        self.refused[peer] = dict(session.get("refused") or {})
        self.last_refused[peer] = session.get("last_refused")


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(event("bfd_configure_failed", reason=repr(task.exception())))
