"""What every command shares: exit codes, the config file, and the one way to ask the daemon."""

from __future__ import annotations

import os
from typing import Any

from routed import api
from routed.config import ConfigError, NodeConfig, load_config

DEFAULT_CONFIG = os.environ.get("ROUTED_CONFIG", "/etc/routed/routed.yaml")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def node_config(path: str) -> NodeConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CliError(
            f"{exc}\nrouted: invalid config; nothing was changed. "
            "Fix the fields above (see config/README.md).",
            EXIT_USAGE,
        ) from exc


def ask_daemon(
    socket_path: str, op: str, *, when_down: str | None, timeout: float = 30, **request: Any
) -> Any:
    """One request to the daemon. Its refusal is a CliError with its exit code; no daemon is a
    CliError saying `when_down`, or with None, api.DaemonNotRunning for the caller to handle."""
    try:
        return api.call(socket_path, op, timeout=timeout, **request)
    except api.DaemonNotRunning as exc:
        if when_down is None:
            raise
        raise CliError(f"no routed daemon answers on {socket_path}; {when_down}") from exc
    except api.ApiError as exc:
        raise CliError(str(exc), exc.exit_code) from exc
