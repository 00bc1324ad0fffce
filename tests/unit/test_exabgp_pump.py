"""The command pump writes our commands to ExaBGP in order, at most ACK_WINDOW unanswered,
and at once (without another turn of the event loop) when nothing waits before them."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from bgp.exabgp import pump as pump_module
from bgp.exabgp.process import Channel
from bgp.exabgp.pump import CommandPump


class Transport:
    def __init__(self) -> None:
        self.buffered = 0

    def get_write_buffer_size(self) -> int:
        return self.buffered


class Writer:
    def __init__(self) -> None:
        self.written: list[str] = []
        self.transport = Transport()

    def write(self, data: bytes) -> None:
        self.written.append(data.decode().rstrip("\n"))

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def is_closing(self) -> bool:
        return False


async def started(pump: CommandPump) -> tuple[Writer, asyncio.Task[Any]]:
    writer = Writer()
    pump.attach(Channel(asyncio.StreamReader(), writer))  # type: ignore[arg-type]
    task = asyncio.create_task(pump.run())
    await asyncio.sleep(0)  # the pump waits for its first command
    return writer, task


async def test_commands_are_written_at_once_when_nothing_waits() -> None:
    pump = CommandPump(Counter())
    writer, task = await started(pump)
    try:
        pump.queue(["neighbor 10.0.0.12 announce eor ipv4 unicast", "neighbor 10.0.0.13 teardown 2"])
        assert writer.written == [
            "neighbor 10.0.0.12 announce eor ipv4 unicast",
            "neighbor 10.0.0.13 teardown 2",
        ]
    finally:
        task.cancel()


async def test_a_full_window_queues_and_keeps_the_order(monkeypatch: Any) -> None:
    monkeypatch.setattr(pump_module, "ACK_WINDOW", 2)
    pump = CommandPump(Counter())
    writer, task = await started(pump)
    try:
        pump.queue(["one", "two", "three", "four"])
        assert writer.written == ["one", "two"]  # the window is full: the rest waits for answers
        pump.queue(["five"])
        pump.answered(True, "done")
        pump.answered(True, "done")
        for _ in range(10):
            await asyncio.sleep(0)
        assert writer.written == ["one", "two", "three", "four"]
        pump.answered(True, "done")
        pump.answered(True, "done")
        for _ in range(10):
            await asyncio.sleep(0)
        assert writer.written == ["one", "two", "three", "four", "five"]
    finally:
        task.cancel()


async def test_a_pipe_with_unwritten_bytes_takes_the_queue() -> None:
    pump = CommandPump(Counter())
    writer, task = await started(pump)
    try:
        writer.transport.buffered = 4096  # ExaBGP is slow to read: wait for drain(), in order
        pump.queue(["one", "two"])
        assert writer.written == []
        writer.transport.buffered = 0
        for _ in range(10):
            await asyncio.sleep(0)
        assert writer.written == ["one", "two"]
    finally:
        task.cancel()


async def test_before_the_pump_runs_commands_wait_to_be_taken() -> None:
    pump = CommandPump(Counter())
    pump.attach(Channel(asyncio.StreamReader(), Writer()))  # type: ignore[arg-type]
    pump.queue(["one"])
    assert pump.take_queued() == ["one"]
