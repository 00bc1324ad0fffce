"""The speaker's one way to ExaBGP: the process, its API channel, our commands, its events.

The supervisor keeps ExaBGP running; each API channel it opens is read here in chunks, each
chunk's lines parsed into events and handed to the speaker as one batch (one FIB pass and one
export pass per chunk, not per line). Answers to our commands settle the command pump and
never reach the speaker. What the speaker says goes out as plans and End-of-RIBs, written in
ExaBGP's text by bgp.exabgp.commands.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from bgp.events import event
from bgp.exabgp import commands
from bgp.exabgp.messages import MessageError, parse_line
from bgp.exabgp.patched import installed_is_patched
from bgp.exabgp.process import Channel, ExaBgpSupervisor
from bgp.exabgp.pump import CommandPump
from bgp.export import ExportPlan
from bgp.model import CommandAnswer, Event, IPAddress

log = logging.getLogger("bgp.speaker")

READ_CHUNK = 1 << 20


class EventHandler(Protocol):
    def channel_opened(self) -> None:
        """A new ExaBGP (and API channel): it knows nothing of what we sent the last one."""

    def events(self, batch: Sequence[Event]) -> None:
        """Everything one read from ExaBGP held, in order."""

    def channel_lost(self) -> None:
        """ExaBGP or its API process died: every session went with it."""


class ExaBgpBridge:
    def __init__(
        self,
        runtime_dir: Path,
        config_text: Callable[[str], str],
        environment: dict[str, str],
        handler: EventHandler,
        counters: Counter[str],
    ) -> None:
        self.handler = handler
        self.counters = counters
        self.pump = CommandPump(counters)
        self.ranges = installed_is_patched()  # neighbour ranges only for an ExaBGP that reads them
        self.supervisor = ExaBgpSupervisor(runtime_dir, config_text, environment, self._on_channel)
        self._readers: list[asyncio.Task[Any]] = []

    @property
    def connected(self) -> bool:
        return self.pump.channel is not None

    @property
    def pid(self) -> int | None:
        process = self.supervisor.process
        return process.pid if process else None

    @property
    def restarts(self) -> int:
        return self.supervisor.restarts

    async def run(self) -> None:
        writer = asyncio.create_task(self.pump.run(), name="bgp-writer")
        try:
            await self.supervisor.run()
        finally:
            writer.cancel()
            for task in self._readers:
                task.cancel()

    async def stop(self) -> None:
        await self.supervisor.stop()

    def reload_config(self) -> None:
        self.supervisor.reload_config()

    # --- what we say -------------------------------------------------------------------

    def send(self, plan: ExportPlan) -> None:
        for withdrawn, peers in plan.withdraws.items():
            self.pump.queue(commands.withdraw(peers, withdrawn, self.ranges))
        for (attributes, announced), peers in plan.announces.items():
            self.pump.queue(commands.announce(peers, announced, attributes, self.ranges))

    def end_of_rib(self, peers: Sequence[IPAddress], families: Iterable[str]) -> None:
        self.pump.queue(commands.end_of_rib(peers, family) for family in families)

    def teardown(self, peers: Sequence[IPAddress], subcode: int) -> None:
        self.pump.queue([commands.teardown(peers, subcode)])

    async def flushed(self, timeout: float) -> None:
        await self.pump.flushed(timeout)

    # --- what ExaBGP says ---------------------------------------------------------------

    async def _on_channel(self, channel: Channel) -> None:
        self.pump.attach(channel)
        self.handler.channel_opened()
        self._readers = [t for t in self._readers if not t.done()]
        self._readers.append(asyncio.create_task(self.read(channel), name="bgp-reader"))

    async def read(self, channel: Channel) -> None:
        pending = b""
        try:
            while chunk := await channel.reader.read(READ_CHUNK):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                batch = [ev for ev in map(self._parse, lines) if ev is not None]
                self.handler.events(batch)
        finally:
            channel.close()
            if self.pump.channel is channel:
                self.pump.channel = None
                self.handler.channel_lost()

    def _parse(self, raw: bytes) -> Event | None:
        try:
            ev = parse_line(raw.decode(errors="replace"))
        except Exception as exc:  # MessageError, or a case no one foresaw: the reader must go on
            self.counters["messages_dropped"] += 1
            reason = exc if isinstance(exc, MessageError) else repr(exc)
            log.warning(
                event("exabgp_message_dropped", reason=reason, line=raw[:200].decode(errors="replace"))
            )
            return None
        if ev is None:
            return None
        self.counters["messages"] += 1
        if isinstance(ev, CommandAnswer):
            self.pump.answered(ev.ok, ev.text)
            return None
        return ev
