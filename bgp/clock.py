"""Time as the speaker's rules see it: a wall clock for what `routed status` shows, and timers.

The speaker's objects take a Clock instead of calling asyncio and time themselves, so their
timer rules (graceful restart, hold-down, start-up, headless) run in unit tests on a fake one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds (time.time), for status and logs."""

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run `callback(*args)` once, `delay` seconds from now."""


class LoopClock:
    """The running asyncio loop's timers and the system's wall clock."""

    def time(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback, *args)
