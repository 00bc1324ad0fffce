"""The local API's client side: one JSON request over the daemon's root-only unix socket.

One request per line, one response per line:
  {"op": "workload.add", "id": "web-1", "netns": "web-1", "ips": ["10.65.0.7"]}
  {"ok": true, "result": {...}}   or   {"ok": false, "error": "...", "exit_code": 2}

Kept free of asyncio: the CLI and the CNI plugin import it on every call (the server is
routed.apiserver).
"""

from __future__ import annotations

import json
import socket
from typing import Any


class ApiError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DaemonNotRunning(Exception):
    pass


def call(path: str, op: str, timeout: float = 30.0, **fields: Any) -> Any:
    """Send one request to the daemon; raises DaemonNotRunning if nothing listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(path) from exc
        sock.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
        with sock.makefile("rb") as stream:
            line = stream.readline()
    except TimeoutError as exc:
        raise ApiError(
            f"routed did not answer {op} on {path} within {timeout:g} s; `routed status` shows whether "
            "it is alive, its log why it is slow"
        ) from exc
    finally:
        sock.close()
    if not line:
        raise ApiError(f"routed closed the API connection on {path} without answering")
    response = json.loads(line)
    if not response.get("ok"):
        raise ApiError(response.get("error", "unknown error"), int(response.get("exit_code", 1)))
    return response.get("result")
