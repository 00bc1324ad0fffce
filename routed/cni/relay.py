"""routed's CNI plugin as runtimes run it: a relay that hands the invocation (CNI_* and the
network config) to the node's daemon, which does the CNI work with everything already loaded,
and prints the daemon's answer.

A runtime starts a plugin process for every ADD and DEL, so its start-up is on every container's
path. This module imports only C modules of the standard library (`_json`, `_socket`, `posix`):
run with `python -I -S` (as `routed cni install` writes it) the process is up and answered in
~10 ms, where Python with `site` and the full plugin's imports took ~75 ms (bench/cni.py).
When the daemon cannot be reached, or does not know the `cni` op (an older daemon), the full
plugin (routed.cni.plugin) runs in this process instead: a DEL still cleans up, and every error
still comes back in CNI's format.
"""

from __future__ import annotations

import _json
import _socket
import os
import sys

TYPE_CHECKING = False  # typing itself is not imported at run time: it costs a few ms
if TYPE_CHECKING:
    from typing import Any

DEFAULT_SOCKET = "/run/routed/routed.sock"
# A node starting a hundred pods at once queues their ADDs in the daemon, one attach at a time:
# under load the last waits for seconds (10 s was too short in CI). Runtimes bound the whole
# sandbox set-up themselves (kubelet's runtime-request-timeout is 2 minutes).
DEFAULT_TIMEOUT = 60.0
TRY_AGAIN_LATER = 11  # CNI's error code for a transient failure


class _Decoding:
    """What `_json.make_scanner` reads off a JSONDecoder, without importing json (and re)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, Any] = {}  # noqa: RUF012 - the scanner's attribute, as JSONDecoder has it

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")


_scan = _json.make_scanner(_Decoding())  # type: ignore[arg-type]  # duck-typed, as json.decoder does
_quote = _json.encode_basestring_ascii
_SPACE = " \t\n\r"


def loads(text: str) -> Any:
    start = len(text) - len(text.lstrip(_SPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"not JSON at {exc.value}") from None
    except Exception as exc:  # the C scanner's own errors (JSONDecodeError, or worse): not JSON
        raise ValueError(f"not JSON: {exc}") from None
    if text[end:].strip(_SPACE):
        raise ValueError(f"extra data at {end}")
    return value


def request_line(env: dict[str, str], stdin: str) -> bytes:
    """{"op": "cni", "env": {...}, "stdin": "..."} and a newline, written by hand (no json)."""
    pairs = ",".join(f"{_quote(k)}:{_quote(v)}" for k, v in sorted(env.items()))
    return f'{{"op":"cni","env":{{{pairs}}},"stdin":{_quote(stdin)}}}\n'.encode()


def _settings(stdin: str) -> tuple[str, float]:
    """The daemon's socket and the wait for it, from the network config (defaults if absent)."""
    config = loads(stdin)
    if not isinstance(config, dict):
        raise ValueError("the network config is not a JSON object")
    socket_path = config.get("socket") or DEFAULT_SOCKET
    timeout = float(config.get("timeout") or DEFAULT_TIMEOUT)
    if not isinstance(socket_path, str) or not 0 < timeout <= 3600:
        raise ValueError("bad socket or timeout")
    return socket_path, timeout


def relay(env: dict[str, str], stdin: str) -> tuple[str, int] | None:
    """The daemon's (output, exit code), or None if it did not take the invocation."""
    try:
        socket_path, timeout = _settings(stdin)
    except (ValueError, TypeError):
        return None  # the full plugin says what is wrong with the config, in CNI's format
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(socket_path)
        except OSError:
            return None  # not running (or not here): the full plugin knows what to do then
        sock.sendall(request_line(env, stdin))
        chunks: list[bytes] = []
        while not chunks or not chunks[-1].endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except TimeoutError:
        # The daemon has the request and is still on it: handing it to the full plugin would
        # send it a second time (twice the queue for a daemon that is already behind).
        return _timed_out(stdin, socket_path, timeout), 1
    except OSError:
        return None  # reset: the full plugin reports it properly
    finally:
        sock.close()
    try:
        response = loads(b"".join(chunks).decode())
        result = response["result"] if response.get("ok") else None
        return (str(result["output"]), int(result["code"])) if result else None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return None


def _timed_out(stdin: str, socket_path: str, timeout: float) -> str:
    try:
        version = loads(stdin).get("cniVersion") or "1.0.0"
    except (ValueError, AttributeError):
        version = "1.0.0"
    message = (
        f"routed did not answer on {socket_path} within {timeout:g} s; `routed status` shows "
        "whether it is alive, its log why it is slow (raise `timeout` in the network config "
        "if it is only busy)"
    )
    return f'{{"cniVersion":{_quote(str(version))},"code":{TRY_AGAIN_LATER},"msg":{_quote(message)}}}'


def main() -> int:
    raw = sys.stdin.buffer.read()
    env = {k: v for k, v in os.environ.items() if k.startswith("CNI_")}
    try:
        answered = relay(env, raw.decode())
    except UnicodeDecodeError:
        answered = None
    if answered is not None:
        output, code = answered
        if output:
            sys.stdout.write(output + "\n")
        return code
    return _full_plugin(raw)


def _full_plugin(stdin: bytes) -> int:
    """In this process, with the site-packages that `python -S` left out."""
    if "site" not in sys.modules:
        import site

        site.main()
    from routed.cni.plugin import answer

    return answer(stdin)


if __name__ == "__main__":
    sys.exit(main())
