"""Our commands to ExaBGP: queued, written in order, at most ACK_WINDOW unanswered at a time.

ExaBGP answers every command (`exabgp.api.ack`); answers come back in order on the
JSON stream, so each one settles the oldest command in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable

from bgp.events import event
from bgp.exabgp.process import Channel

log = logging.getLogger("bgp.exabgp")

ACK_WINDOW = 64  # commands in flight before we wait for ExaBGP's answers


class CommandPump:
    def __init__(self, counters: Counter[str]) -> None:
        self.channel: Channel | None = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._in_flight: deque[str] = deque()
        self._window_open = asyncio.Event()
        self._window_open.set()
        self._counters = counters
        self._idle = False  # run() waits for the next command: one may be written at once

    def attach(self, channel: Channel) -> None:
        """A new ExaBGP: nothing of the old one's is in flight any more."""
        self.channel = channel
        self._in_flight.clear()
        self._window_open.set()

    def queue(self, lines: Iterable[str]) -> None:
        """Queue `lines`; while nothing waits before them, write them at once (a reflected route
        is then on its way to ExaBGP without another turn of the event loop)."""
        for line in lines:
            channel = self.channel
            if (
                self._idle
                and self._outbox.empty()
                and self._window_open.is_set()
                and channel is not None
                and not channel.writer.is_closing()
                and channel.writer.transport.get_write_buffer_size() == 0
            ):
                self._write(channel, line)
            else:
                self._outbox.put_nowait(line)

    def take_queued(self) -> list[str]:
        """Remove and return the commands not written yet (what a speaker would send next)."""
        lines = []
        while not self._outbox.empty():
            lines.append(self._outbox.get_nowait())
        return lines

    def answered(self, ok: bool, text: str) -> None:
        sent = self._in_flight.popleft() if self._in_flight else "?"
        if not ok:
            self._counters["commands_failed"] += 1
            log.error(event("exabgp_command_failed", answer=text, command=sent[:300]))
        if len(self._in_flight) < ACK_WINDOW:
            self._window_open.set()

    async def flushed(self, timeout: float) -> None:
        """Returns when ExaBGP has answered every command queued so far (or after `timeout`)."""
        deadline = time.monotonic() + timeout
        while (not self._outbox.empty() or self._in_flight) and time.monotonic() < deadline:
            if self.channel is None:
                return  # no ExaBGP to tell; its death already ended every session
            await asyncio.sleep(0.02)

    def _write(self, channel: Channel, line: str) -> bool:
        try:
            channel.writer.write(line.encode() + b"\n")
        except (ConnectionError, OSError, RuntimeError):
            return False  # ExaBGP is going; the next channel re-announces everything
        self._in_flight.append(line)
        self._counters["commands_sent"] += 1
        if len(self._in_flight) >= ACK_WINDOW:
            self._window_open.clear()
        return True

    async def run(self) -> None:
        while True:
            self._idle = True
            try:
                line = await self._outbox.get()
            finally:
                self._idle = False
            while True:
                await self._window_open.wait()
                channel = self.channel
                if channel is not None and not channel.writer.is_closing():
                    break
                await asyncio.sleep(0.1)  # no ExaBGP right now; the next channel re-announces anyway
            if not self._write(channel, line):
                continue
            try:
                await channel.writer.drain()
            except (ConnectionError, OSError):
                continue
