"""`routed COMMAND`: parse, run the command, turn its errors into a message and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from routed.cli import commands, tools
from routed.cli.common import EXIT_FAILURE, CliError
from routed.cli.parser import parser

HANDLERS = {
    "run": commands.cmd_run,
    "config": commands.cmd_config_check,
    "workload": commands.cmd_workload,
    "routes": commands.cmd_routes,
    "status": commands.cmd_status,
    "ipam": commands.cmd_ipam,
    "cni": tools.cmd_cni,
    "lab": tools.cmd_lab,
    "stop": commands.cmd_stop,
    "drain": commands.cmd_drain,
    "reload": commands.cmd_reload,
    "service": tools.cmd_service,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return HANDLERS[args.command](args)
    except CliError as exc:
        print(f"routed: {exc}", file=sys.stderr)
        return exc.exit_code
    except PermissionError as exc:
        print(f"routed: {exc}; run as root", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
