"""The relay (routed/cni/relay.py) against a socket that takes a request and never answers:
it reports CNI's try-again-later error and does not hand the request to the full plugin, which
would send the daemon the same ADD a second time."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from routed.cni import relay


def test_a_daemon_that_took_the_request_but_is_slow_gets_it_once(tmp_path: Path) -> None:
    path = str(tmp_path / "api.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:  # a thread: the relay under test is blocking code
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            received.append(conn.recv(65536))
            stop.wait(2)  # hold the connection open, answering nothing
            conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        stdin = json.dumps({"cniVersion": "0.4.0", "socket": path, "timeout": 0.3})
        answered = relay.relay({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1"}, stdin)
    finally:
        stop.set()
        thread.join()
        server.close()
    assert answered is not None, "a timed-out request must not fall through to the full plugin"
    output, code = answered
    error = json.loads(output)
    assert code == 1 and error["code"] == relay.TRY_AGAIN_LATER and error["cniVersion"] == "0.4.0"
    assert "within 0.3 s" in error["msg"] and path in error["msg"]
    assert len(received) == 1 and b'"CNI_CONTAINERID":"c1"' in received[0]


def test_no_daemon_listening_falls_through_to_the_full_plugin(tmp_path: Path) -> None:
    stdin = json.dumps({"cniVersion": "1.0.0", "socket": str(tmp_path / "none.sock")})
    assert relay.relay({"CNI_COMMAND": "ADD"}, stdin) is None
