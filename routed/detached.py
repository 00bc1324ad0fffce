"""Helper processes that outlive the daemon (the Docker plugin's front, the BFD process): started
in a session of their own, and ready once their unix socket answers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from routed.apiserver import answers

# a Python process that imports aiohttp answers in ~1-2 s here; CI once saw the Docker front
# answer just after 10 s while four labs started and an image was built on two cores, and the
# daemon refused to start. Waiting longer costs nothing when the helper is quick.
START_TIMEOUT = 30.0


async def start_detached(module: str, args: list[str], socket: Path, what: str) -> asyncio.subprocess.Process:
    """Run `python -I -m module args...` (isolated, from /) in its own session (a restart of
    routed does not stop it) and wait until it answers on `socket`; OSError naming `what` if not."""
    # -I and cwd /: a `routed/` directory where `routed run` was started, or PYTHONPATH, must not
    # shadow the installed package in a process that runs as root
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-m",
        module,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
        cwd="/",
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while not await answers(socket):
        if child.returncode is not None or loop.time() > deadline:
            raise OSError(
                f"{what} did not come up on {socket} (exit code {child.returncode}); see the lines above"
            )
        await asyncio.sleep(0.05)
    return child
