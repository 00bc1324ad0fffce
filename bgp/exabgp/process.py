"""Run ExaBGP as our child, restart it when it dies, and hand its API pipes to the speaker.

ExaBGP starts the relay (bgp.exabgp.relay) as its API process; the relay passes
its stdin/stdout to us over a private unix socket, so we speak to ExaBGP directly.
ExaBGP gets PR_SET_PDEATHSIG: if routed dies, even by SIGKILL, the kernel kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from routed.log import event

log = logging.getLogger("bgp.exabgp")

PR_SET_PDEATHSIG = 1
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a run this long resets the backoff


def _die_with(parent: int) -> Callable[[], None]:
    """A preexec_fn: the child is killed when `parent` dies. Compared with the parent's own pid,
    not with 1: in a container routed may be pid 1 itself."""

    def die_with_parent() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return die_with_parent


@dataclass
class Channel:
    """ExaBGP's API pipes: its JSON comes in on `reader`, our commands go out on `writer`."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    relay: socket.socket

    def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            self.relay.close()


async def _open_channel(sock: socket.socket) -> Channel:
    loop = asyncio.get_running_loop()
    sock.settimeout(5)
    # The relay sends its two fds right after connecting; this wait is milliseconds.
    _, fds, _, _ = await loop.run_in_executor(None, socket.recv_fds, sock, 64, 2)
    if len(fds) != 2:
        raise OSError("the relay did not pass ExaBGP's two pipes")
    read_fd, write_fd = fds
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0))
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(write_fd, "wb", 0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return Channel(reader, writer, sock)


class ExaBgpSupervisor:
    """Keeps one ExaBGP running; calls `on_channel` for each new API channel (one per ExaBGP run)."""

    def __init__(
        self,
        runtime_dir: Path,
        config_text: Callable[[Path], str],
        environment: dict[str, str],
        on_channel: Callable[[Channel], Awaitable[None]],
    ) -> None:
        self.runtime_dir = runtime_dir
        self.config_path = runtime_dir / "exabgp.conf"
        self.bridge_path = runtime_dir / "api.sock"
        self._config_text = config_text
        self._environment = environment
        self._on_channel = on_channel
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False

    def _write_config(self) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold MD5 keys
        with os.fdopen(fd, "w") as handle:
            handle.write(self._config_text(self.bridge_path))
        os.replace(tmp, self.config_path)

    def reload_config(self) -> None:
        """Write the config again and have ExaBGP reload it (SIGUSR1): it starts added
        neighbors, stops removed ones and leaves unchanged sessions as they are. An ExaBGP
        between runs reads the new file when it starts."""
        self._write_config()
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGUSR1)
            log.info(event("exabgp_reload", pid=self.process.pid))

    def _prepare(self) -> socket.socket:
        self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.runtime_dir, 0o700)
        self._write_config()
        with contextlib.suppress(FileNotFoundError):
            self.bridge_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.bridge_path))
        os.chmod(self.bridge_path, 0o600)
        listener.listen(4)
        listener.setblocking(False)
        return listener

    async def run(self) -> None:
        listener = self._prepare()
        backoff = BACKOFF_FIRST
        try:
            while not self._stopping:
                started = time.monotonic()
                code = await self._run_once(listener)
                if self._stopping:
                    break
                ran = time.monotonic() - started
                if ran > STABLE_AFTER:
                    backoff = BACKOFF_FIRST
                self.restarts += 1
                log.error(
                    event(
                        "exabgp_exited",
                        code=code,
                        ran_s=round(ran, 1),
                        restart_in_s=backoff,
                        restarts=self.restarts,
                    )
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            listener.close()
            await self.stop()

    async def _run_once(self, listener: socket.socket) -> int | None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("exabgp")}
        env.update(self._environment)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bgp.exabgp.launch",  # ExaBGP's main with a reactor bug fixed (see launch.py)
            "server",
            str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with(os.getpid()),
            start_new_session=True,
        )
        log.info(event("exabgp_started", pid=self.process.pid, config=self.config_path))
        output = asyncio.create_task(self._fold_output(self.process))
        accept = asyncio.create_task(self._accept(listener))
        try:
            await self.process.wait()
        finally:
            accept.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await accept
            await output
        return self.process.returncode

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        channel: Channel | None = None
        try:
            while True:
                sock, _ = await loop.sock_accept(listener)
                try:
                    new = await _open_channel(sock)
                except OSError as exc:
                    log.error(event("exabgp_channel_failed", reason=exc))
                    sock.close()
                    continue
                if channel is not None:
                    channel.close()
                channel = new
                log.info(event("exabgp_channel_open"))
                await self._on_channel(channel)
        finally:
            if channel is not None:
                channel.close()

    async def _fold_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            if not text:
                continue
            # ExaBGP prefixes each line with its subsystem; its start-up advice is noise for us
            level = logging.DEBUG if text.startswith("advice") else logging.WARNING
            log.log(level, event("exabgp_log", pid=process.pid, line=text))

    async def stop(self) -> None:
        self._stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        log.info(event("exabgp_stopped", pid=process.pid, code=process.returncode))
