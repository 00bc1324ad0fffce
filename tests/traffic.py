"""Counted traffic for restart tests: ping streams at a known rate, every packet accounted for.

A stream is `ping -i INTERVAL -c COUNT -W 1` inside a container of a lab node; its
summary line says how many were sent and how many came back. Nothing is inferred. Each
reply's line is kept too, so a stream that lost packets says which and when (printed by
`lost`, which pytest shows with a failed test): a loss is then placed against the test's
and the lab's logged events.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field

from bgp import procfs
from bgp.exabgp.commands import runs
from tests.lab import Lab

SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")
# an echo reply; "From 10.0.0.1 icmp_seq=N Destination Net Unreachable" is not one
REPLY = re.compile(r"bytes from .*icmp_seq=(\d+)")


@dataclass
class PingStream:
    lab: Lab
    node: str
    netns: str
    destination: str
    seconds: float
    rate: int = 20  # packets per second
    output: str = ""
    started: float = 0.0  # time.monotonic() when the stream began
    started_wall: float = 0.0  # time.time() then, to place a loss against the logs
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        return int(self.seconds * self.rate)

    def start(self) -> PingStream:
        def run() -> None:
            self.output = self.lab.exec(
                self.node,
                "ip",
                "netns",
                "exec",
                self.netns,
                "ping",
                "-i",
                str(1 / self.rate),
                "-c",
                str(self.count),
                "-W",
                "1",
                self.destination,
                check=False,
                timeout=self.seconds + 60,
            ).stdout

        self._thread = threading.Thread(target=run, daemon=True)
        self.started, self.started_wall = time.monotonic(), time.time()
        self._thread.start()
        return self

    def result(self) -> tuple[int, int]:
        """(sent, received), once the stream has ended."""
        assert self._thread is not None
        self._thread.join(timeout=self.seconds + 90)
        match = SUMMARY.search(self.output)
        assert match, f"no ping summary from {self.node}/{self.netns} -> {self.destination}: {self.output!r}"
        return int(match.group(1)), int(match.group(2))

    def missing(self) -> list[int]:
        """The sequence numbers (from 1) no reply came back for, once the stream has ended."""
        answered = {int(number) for number in REPLY.findall(self.output)}
        return [number for number in range(1, self.count + 1) if number not in answered]

    def describe_losses(self) -> str:
        """Which requests went unanswered, as runs with their send times (wall clock, UTC)."""
        parts = []
        for first, last in runs(self.missing()):
            at = self.started_wall + (first - 1) / self.rate
            stamp = time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}"
            offset = (first - 1) / self.rate
            parts.append(f"icmp_seq {first}-{last} ({last - first + 1}) sent from {stamp} (+{offset:.2f} s)")
        return f"{self.label}: " + ", ".join(parts)

    @property
    def label(self) -> str:
        return f"{self.node}/{self.netns}->{self.destination}"


def lost(streams: list[PingStream]) -> dict[str, tuple[int, int]]:
    """{stream: (sent, lost)} for every stream, after all have ended."""
    out = {}
    for stream in streams:
        sent, received = stream.result()
        assert sent == stream.count, f"{stream.label}: ping sent {sent} of {stream.count}"
        out[stream.label] = (sent, sent - received)
        if received < sent:
            print("lost:", stream.describe_losses())
    return out


def total_lost(counts: dict[str, tuple[int, int]]) -> int:
    return sum(lost for _, lost in counts.values())


def kill_and_wait(pid: int, sig: signal.Signals, timeout: float = 20) -> None:
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    # a zombie is gone as far as the network is concerned
    while procfs.state(pid) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)


def echoes_in(lab: Lab, node: str, container: str, counter: str) -> int:
    """An ICMP counter of a container's own network namespace (nstat: absolute, zeros too)."""
    out = lab.exec(node, "ip", "netns", "exec", container, "nstat", "-az", counter).stdout
    match = re.search(rf"^{counter}\s+(\d+)", out, re.MULTILINE)
    assert match, out
    return int(match.group(1))


def ping_from(lab: Lab, node: str, container: str, *args: str) -> int:
    """How many of its echoes were answered."""
    out = lab.exec(node, "ip", "netns", "exec", container, "ping", "-n", *args, check=False).stdout
    match = re.search(r"(\d+) received", out)
    return int(match.group(1)) if match else 0


Container = tuple[str, str]  # (lab node, container netns)


def echoes(
    lab: Lab, sender: Container, target: Container, address: str, count: int, source: str
) -> tuple[int, int]:
    """`count` pings from `sender` with `source` to `address` (`target`'s): (answered, counted arriving)."""
    counter = "Icmp6InEchos" if ":" in address else "IcmpInEchos"
    before = echoes_in(lab, *target, counter)
    family = ["-6"] if ":" in address else []
    answered = ping_from(lab, *sender, *family, f"-c{count}", "-i0.05", "-W1", "-I", source, address)
    return answered, echoes_in(lab, *target, counter) - before
