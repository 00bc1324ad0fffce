"""The Docker plugin's front: a small process that owns Docker's plugin socket and relays each
call to the routed daemon's API, where the plugin's logic lives (routed.docker.plugin).

Why a process of its own, started and watched by the daemon (and not the daemon itself):
- routed restarting (an upgrade, a crash, SIGKILL) must be a pause for Docker, not an error:
  the front keeps the socket and waits for the daemon to answer again;
- routed stopped must be an error a Docker user can act on: the front answers "routed is not
  running on this host, start it", where a socket nobody listens on gives Docker's bare
  "connection refused" after 30 s of retries.
It holds no state: every answer comes from the daemon.

    python -m routed.docker.front --socket /run/docker/plugins/routed.sock --api /run/routed/routed.sock
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

from aiohttp import web

from routed.docker.protocol import UNKNOWN_CALL
from routed.log import event, setup

log = logging.getLogger("routed.docker.front")

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
MAX_REQUEST = 1 << 20


async def relay(api: str, call: str, body: dict[str, Any], wait: float) -> dict[str, Any]:
    """One call through the daemon's API; while the daemon does not answer (restarting), try
    again until `wait` runs out."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            reader, writer = await asyncio.open_unix_connection(api, limit=MAX_REQUEST * 4)
        except (FileNotFoundError, ConnectionRefusedError):
            if asyncio.get_running_loop().time() >= deadline:
                return {
                    "Err": f"routed is not running on this host (nothing answers on {api} for {wait:g} s): "
                    "start it (systemctl start routed, or routed run -c CONFIG); containers already "
                    "running keep their addresses and routes meanwhile"
                }
            await asyncio.sleep(0.2)
            continue
        try:
            writer.write(json.dumps({"op": "docker", "call": call, "body": body}).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if not line:  # the daemon went away mid-call: it may be restarting
            if asyncio.get_running_loop().time() >= deadline:
                return {"Err": f"routed closed the connection on {api} during {call}; see its log"}
            await asyncio.sleep(0.2)
            continue
        response = json.loads(line)
        if not response.get("ok"):
            return {"Err": str(response.get("error") or "routed failed; see its log")}
        return dict(response.get("result") or {})


def application(api: str, wait: float) -> web.Application:
    async def view(request: web.Request) -> web.Response:
        call = request.match_info["call"]
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return web.json_response({"Err": f"bad JSON: {exc}"}, status=400, content_type=CONTENT_TYPE)
        answer = await relay(api, call, body if isinstance(body, dict) else {}, wait)
        if answer.get(UNKNOWN_CALL):
            raise web.HTTPNotFound()
        if "Err" in answer:
            # An error is a 500 with {"Err": ...}, as Docker's plugin helpers send it: Docker's
            # plugin client reads that for every driver kind, where a 200 would be decoded
            # by kind (the IPAM's responses call the field "Error", the network's "Err").
            log.warning(event("docker_call_refused", call=call, reason=answer["Err"]))
            return web.json_response({"Err": answer["Err"]}, status=500, content_type=CONTENT_TYPE)
        return web.json_response(answer, content_type=CONTENT_TYPE)

    app = web.Application(client_max_size=MAX_REQUEST)
    app.router.add_post("/{call}", view)
    return app


async def serve(socket_path: Path, api: str, wait: float) -> None:
    runner = web.AppRunner(application(api, wait), access_log=None, handle_signals=False)
    await runner.setup()
    socket_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    old = os.umask(0o177)  # root only, like Docker's own socket: a caller can create interfaces
    try:
        await web.UnixSite(runner, str(socket_path)).start()
    finally:
        os.umask(old)
    log.info(event("docker_front_started", socket=socket_path, api=api, pid=os.getpid()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()  # stopped on purpose: Docker should say "plugin not found"
        log.info(event("docker_front_stopped", socket=socket_path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m routed.docker.front", description=__doc__.split("\n")[0])
    parser.add_argument("--socket", required=True, type=Path, help="Docker's plugin socket to serve")
    parser.add_argument("--api", required=True, help="the routed daemon's API socket")
    parser.add_argument("--wait", type=float, default=20.0, help="seconds to wait for a restarting daemon")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    setup("info", args.log_format)
    asyncio.run(serve(args.socket, args.api, args.wait))


if __name__ == "__main__":
    main()
