"""Run ExaBGP as our child, restart it when it dies, and hand its API pipes to the speaker.

ExaBGP's API process is `sleep`, under `setpriv --pdeathsig KILL` (~1.7 MB, where a Python
helper was 12 MB): it only holds the two pipes ExaBGP made for it. We open the same pipes
through /proc/PID/fd/0 and /1 (Linux opens a pipe's other end from there), so we read
ExaBGP's JSON and write our commands directly; a pidfd tells us if ExaBGP replaces it
(it respawns a dead API process onto new pipes), and we follow.
ExaBGP gets PR_SET_PDEATHSIG: if routed dies, even by SIGKILL, the kernel kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bgp import procfs
from bgp.events import event

log = logging.getLogger("bgp.exabgp")

PR_SET_PDEATHSIG = 1
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a run this long resets the backoff
API_FIND_INTERVAL = 0.02
API_FIND_TIMEOUT = 30.0


def api_command() -> str:
    """ExaBGP's `run` line for its API process: a sleep that dies with ExaBGP."""
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    sleep = shutil.which("sleep") or "/bin/sleep"
    return f"{setpriv} --pdeathsig KILL -- {sleep} infinity"


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
    closers: list[Callable[[], object]] = field(default_factory=list)

    def close(self) -> None:
        self.writer.close()
        for close in self.closers:
            with contextlib.suppress(OSError):
                close()


def _api_process(parent: int, command: str) -> int | None:
    """ExaBGP's API process once it runs our command (after its exec: before, its fds 0 and 1
    are still ExaBGP's own), or None."""
    wanted = [os.path.basename(w) for w in command.split()[-2:]]  # "sleep infinity": setpriv has exec'd it
    for pid in procfs.pids():
        if procfs.parent(pid) != parent or (argv := procfs.argv(pid)) is None:
            continue
        try:
            piped = os.readlink(procfs.PROC / str(pid) / "fd/0").startswith("pipe:")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if piped and [os.path.basename(a) for a in argv[-2:]] == wanted:
            return pid
    return None


API_PIPE_BYTES = 1 << 20  # Linux's default pipe-max-size


async def _open_channel(pid: int) -> Channel:
    """The pipes of ExaBGP's API process `pid`, opened anew through /proc."""
    loop = asyncio.get_running_loop()
    read_fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        write_fd = os.open(f"/proc/{pid}/fd/1", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        os.close(read_fd)
        raise
    with contextlib.suppress(OSError):
        # ExaBGP writes to this pipe synchronously: while it is full ExaBGP reads no socket.
        # The default 64 KiB hold ~8 UPDATEs as hex, so during a full table ExaBGP stalled
        # whenever the daemon was busy planning or writing routes; 1 MiB hold ~50k routes.
        fcntl.fcntl(read_fd, fcntl.F_SETPIPE_SZ, API_PIPE_BYTES)
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    read_transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
    )
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(write_fd, "wb", 0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return Channel(reader, writer, [read_transport.close])


async def _exited(pid: int) -> None:
    """Returns when process `pid` has exited (a pidfd turns readable)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await gone
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


class ExaBgpSupervisor:
    """Keeps one ExaBGP running; calls `on_channel` for each new API channel (one per ExaBGP run)."""

    def __init__(
        self,
        runtime_dir: Path,
        config_text: Callable[[str], str],  # ExaBGP's config, given its API process's command
        environment: dict[str, str],
        on_channel: Callable[[Channel], Awaitable[None]],
    ) -> None:
        self.runtime_dir = runtime_dir
        self.config_path = runtime_dir / "exabgp.conf"
        self.api_command = api_command()
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
            handle.write(self._config_text(self.api_command))
        os.replace(tmp, self.config_path)

    def reload_config(self) -> None:
        """Write the config again and have ExaBGP reload it (SIGUSR1): it starts added
        neighbors, stops removed ones and leaves unchanged sessions as they are. An ExaBGP
        between runs reads the new file when it starts, and one not started yet writes it then."""
        if not self.runtime_dir.exists():
            return
        self._write_config()
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGUSR1)
            log.info(event("exabgp_reload", pid=self.process.pid))

    def _prepare(self) -> None:
        self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.runtime_dir, 0o700)
        self._write_config()

    async def run(self) -> None:
        self._prepare()
        backoff = BACKOFF_FIRST
        try:
            while not self._stopping:
                started = time.monotonic()
                code = await self._run_once()
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
            await self.stop()

    async def _run_once(self) -> int | None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("exabgp")}
        env.update(self._environment)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # isolated, from /: nothing in the cwd or PYTHONPATH shadows bgp or exabgp
            "-m",
            "bgp.exabgp.launch",  # ExaBGP's main with a reactor bug fixed (see launch.py)
            "server",
            str(self.config_path.absolute()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with(os.getpid()),
            start_new_session=True,
            cwd="/",
        )
        log.info(event("exabgp_started", pid=self.process.pid, config=self.config_path))
        output = asyncio.create_task(self._fold_output(self.process))
        attach = asyncio.create_task(self._attach(self.process.pid))
        try:
            await self.process.wait()
        finally:
            attach.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await attach
            await output
        return self.process.returncode

    async def _attach(self, exabgp: int) -> None:
        """Follow ExaBGP's API process: a channel on its pipes for each one ExaBGP starts."""
        channel: Channel | None = None
        try:
            while True:
                deadline = time.monotonic() + API_FIND_TIMEOUT
                while (api := _api_process(exabgp, self.api_command)) is None:
                    if time.monotonic() > deadline:
                        log.error(
                            event("exabgp_channel_failed", reason="no API process", command=self.api_command)
                        )
                        deadline = time.monotonic() + API_FIND_TIMEOUT
                    await asyncio.sleep(API_FIND_INTERVAL)
                try:
                    new = await _open_channel(api)
                except OSError as exc:
                    log.error(event("exabgp_channel_failed", reason=exc))
                    await asyncio.sleep(API_FIND_INTERVAL)
                    continue
                if channel is not None:
                    channel.close()
                channel = new
                log.info(event("exabgp_channel_open", api_pid=api))
                await self._on_channel(channel)
                await _exited(api)  # ExaBGP respawns it, onto new pipes
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
