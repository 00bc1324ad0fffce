"""The daemon's side of the Docker plugin's front (routed.docker.front): start it when nothing
serves Docker's plugin socket, start it again if it dies, stop it when routed leaves for good.

The front runs in a session of its own, so it outlives the daemon's restarts and crashes:
that is its purpose. A restarted daemon finds it answering and leaves it be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from bgp import procfs
from routed.apiserver import answers
from routed.config import NodeConfig
from routed.detached import start_detached
from routed.log import event

log = logging.getLogger("routed.docker")


class FrontSupervisor:
    def __init__(self, cfg: NodeConfig, log_format: str = "text") -> None:
        self.socket = Path(cfg.docker.socket)
        self.api = cfg.api.socket
        self.pidfile = Path(cfg.state_dir) / "docker-front.pid"
        self.log_format = log_format
        self.wait = cfg.docker.restart_wait
        self._child: asyncio.subprocess.Process | None = None

    async def ensure(self) -> None:
        """Start the front unless one already serves the socket."""
        if await answers(self.socket):
            return
        args = ["--socket", str(self.socket), "--api", self.api, "--wait", str(self.wait)]
        try:
            self._child = await start_detached(
                "routed.docker.front",
                [*args, "--log-format", self.log_format],
                self.socket,
                "the Docker plugin front",
            )
        except OSError as exc:
            raise RuntimeError(str(exc)) from exc
        self.pidfile.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.pidfile.write_text(f"{self._child.pid}\n")
        log.info(event("docker_front_spawned", pid=self._child.pid, socket=self.socket))

    async def watch(self, interval: float = 5.0) -> None:
        while True:
            await self.ensure()
            await asyncio.sleep(interval)

    def stop(self) -> None:
        """routed leaves for good (`routed stop --withdraw`): Docker should find no plugin."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text())
            if "routed.docker.front" in procfs.command_line(pid):  # not a reused pid
                os.kill(pid, signal.SIGTERM)
                log.info(event("docker_front_stopped", pid=pid, socket=self.socket))
