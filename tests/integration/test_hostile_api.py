"""The API socket against hostile clients, on a real daemon in a namespace: each gets a clear
refusal (or is let go), the daemon stays up, serves everyone else, and the kernel is unchanged."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from routed.apiserver import MAX_REQUEST
from tests.integration.conftest import ROUTED, Daemon, Host

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)


def raw(path: Path, payload: bytes, timeout: float = 10) -> bytes:
    """Send bytes on the API socket and read the answer line. Sent from a thread: the daemon
    may answer and close before a large payload is all written."""

    def send() -> None:
        with contextlib.suppress(OSError):  # BrokenPipe once the daemon has refused and closed
            sock.sendall(payload)

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sender = threading.Thread(target=send)
        sender.start()
        with sock.makefile("rb") as stream:
            line = stream.readline()
        sender.join(timeout)
        return line


def answer(path: Path, payload: bytes) -> dict[str, Any]:
    return dict(json.loads(raw(path, payload)))


def become_nobody() -> None:
    os.setgroups([])
    os.setgid(65534)  # not root's group either: its bits would decide, not the others' bits
    os.setuid(65534)


def kernel(host: Host) -> str:
    return subprocess.run(
        # routed's routes (proto 201) of both families and the links by name: what a request could
        # change (the kernel's own link-local routes come and go by themselves)
        [
            "sh",
            "-c",
            f"ip -n {host.netns} route show table all proto 201; "
            f"ip -n {host.netns} -6 route show table all proto 201; "
            f"ip -n {host.netns} -o link show | cut -d: -f2",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_hostile_api_clients(host: Host, daemon: Daemon) -> None:
    path = host.dir / "api.sock"
    before = kernel(host)

    # malformed JSON, not an object, no op, an unknown op, a field missing or of the wrong type
    for payload, needle in (
        (b"{not json\n", "not JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"id": 1}\n', 'no "op"'),
        (b'{"op": "format-disk"}\n', "unknown op 'format-disk'"),
        (b'{"op": "workload.add"}\n', "a field is missing"),
        (b'{"op": "workload.del", "id": {"a": [1]}}\n', "no workload"),
        (b"\xff\xfe\n", "not JSON"),
    ):
        reply = answer(path, payload)
        assert reply["ok"] is False and needle in reply["error"], (payload, reply)
        assert reply["exit_code"] in (1, 2), reply

    # a 10 MB request: refused with a reason, the connection closed
    reply = answer(path, b'{"op": "status", "pad": "' + b"x" * (10 << 20) + b'"}\n')
    assert reply["ok"] is False and f"larger than {MAX_REQUEST}" in reply["error"], reply

    # a client that connects and never sends, and 100 at once: everyone else is still served
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(str(path))
    try:
        replies: list[dict[str, Any]] = []

        def ask() -> None:
            replies.append(answer(path, b'{"op": "status"}\n'))

        threads = [threading.Thread(target=ask) for _ in range(100)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(replies) == 100 and all(r["ok"] for r in replies), replies[:3]
        assert time.monotonic() - started < 30
    finally:
        silent.close()

    # a client that is not root: the socket's mode keeps it out, and were the mode loosened,
    # the daemon's own check (SO_PEERCRED) still refuses it
    # the daemon answers a client that is not root at once and closes: read, do not send
    client = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.connect(sys.argv[1]); print(s.recv(4096).decode())\n"
    )

    def as_nobody() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/usr/bin/python3", "-c", client, str(path)],
            capture_output=True,
            text=True,
            preexec_fn=become_nobody,
            cwd="/",
        )

    refused = as_nobody()
    assert refused.returncode != 0 and "PermissionError" in refused.stderr, refused.stderr[-300:]
    opened = [d for d in (host.dir, *host.dir.parents) if d != Path("/") and not os.stat(d).st_mode & 0o001]
    modes = {d: os.stat(d).st_mode & 0o7777 for d in opened}
    try:
        for directory in opened:
            os.chmod(directory, modes[directory] | 0o001)  # traversable by others, for this check
        os.chmod(path, 0o666)
        answered = as_nobody()
        assert "the routed API is for root only" in answered.stdout, (answered.stdout, answered.stderr)
    finally:
        os.chmod(path, 0o600)
        for directory, mode in modes.items():
            os.chmod(directory, mode)

    # through it all: the daemon is up, answers, logged what it refused, changed nothing
    assert daemon.process is not None and daemon.process.poll() is None
    assert answer(path, b'{"op": "status"}\n')["ok"] is True
    assert "event=api_request_refused" in daemon.text()
    assert kernel(host) == before


def test_a_workload_netns_must_be_a_network_namespace_of_its_own(host: Host, daemon: Daemon) -> None:
    """Issue 25, finding 6: the daemon's own namespace, the machine's (PID 1's), a FIFO, a plain
    file and a directory are each refused with a reason; the FIFO does not block the daemon."""
    assert daemon.process is not None
    fifo = host.dir / "netns-fifo"
    os.mkfifo(fifo)
    plain = host.dir / "netns-file"
    plain.write_text("")
    before = kernel(host)
    for netns, needle in (
        (f"/proc/{daemon.process.pid}/ns/net", "routed's own network namespace"),
        # where PID 1 is outside our reach (a sandbox), opening it is refused before the check
        ("/proc/1/ns/net", "the host's (PID 1's) network namespace|Permission denied"),
        (str(fifo), "not a network namespace"),
        (str(plain), "not a network namespace"),
        (str(host.dir), "not a network namespace"),
        ("/proc/self/ns/mnt", "not a network namespace"),
    ):
        refused = host.routed(
            "workload",
            "add",
            "intruder",
            "--netns",
            netns,
            "--ip",
            "10.65.0.9",
            "-c",
            str(host.config),
            check=False,
            timeout=20,
        )
        assert refused.returncode != 0, (netns, refused.stdout)
        assert any(n in refused.stderr for n in needle.split("|")), (netns, refused.stderr)
        assert "bad network namespace" in refused.stderr, (netns, refused.stderr)
    # the daemon still answers, has no workload and changed nothing in the kernel
    listed = host.routed("workload", "list", "--json", "-c", str(host.config), timeout=20)
    assert json.loads(listed.stdout) == [], listed.stdout
    assert kernel(host) == before
    assert daemon.process.poll() is None


def test_a_corrupt_state_file_stops_the_start_with_its_name_and_the_fix(host: Host) -> None:
    """Issue 25, finding 8: a bare traceback that named no file before."""
    state = host.dir / "state"
    state.mkdir()
    (state / "workloads.json").write_text(
        json.dumps({"version": 1, "workloads": [{"id": "web1", "ips": []}]})
    )
    started = subprocess.run(
        ["ip", "netns", "exec", host.netns, *ROUTED, "run", "-c", str(host.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 1, started.stderr
    assert "Traceback" not in started.stderr, started.stderr
    assert f"{state / 'workloads.json'}: field workloads[0].netns: Field required" in started.stderr
    assert "move the file away" in started.stderr
