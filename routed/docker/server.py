"""The HTTP side of Docker's plugin protocol: POST /<Method> with JSON, on a unix socket that
Docker finds by name under /run/docker/plugins. Unknown methods get 404, which libnetwork
reads as "not implemented" rather than as a failure."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from routed.docker.plugin import Handler
from routed.docker.protocol import PluginError
from routed.log import event

log = logging.getLogger("routed.docker")

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
MAX_REQUEST = 1 << 20


class PluginServer:
    def __init__(self, path: str, handlers: dict[str, Handler]) -> None:
        self.path = Path(path)
        self._handlers = handlers
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_REQUEST)
        for name, handler in self._handlers.items():
            app.router.add_post(f"/{name}", self._view(name, handler))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # ours from the last run (one routed per host, as one dockerd)
        old = os.umask(0o177)  # root only, like Docker's own socket: it can create interfaces
        try:
            await web.UnixSite(self._runner, str(self.path)).start()
        finally:
            os.umask(old)

    async def close(self) -> None:
        """Stop answering but leave the socket file: Docker retries a call on a socket that
        refuses for up to 30 s, so a restart of routed is a pause for it; a missing file would
        be "plugin not found" at once."""
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    def _view(name: str, handler: Handler) -> Any:
        async def view(request: web.Request) -> web.Response:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                return web.json_response({"Err": f"bad JSON: {exc}"}, status=400, content_type=CONTENT_TYPE)
            if not isinstance(body, dict):
                body = {}  # Docker sends `null` for calls with no arguments
            try:
                answer = await handler(body)
            except PluginError as exc:
                log.warning(event("docker_call_refused", call=name, reason=exc))
                answer = {"Err": str(exc)}
            except Exception as exc:
                log.exception(event("docker_call_failed", call=name))
                answer = {"Err": f"routed: {name} failed: {exc}; see routed's log on this host"}
            else:
                log.debug(event("docker_call", call=name))
            return web.json_response(answer, content_type=CONTENT_TYPE)

        return view
