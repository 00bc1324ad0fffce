"""The commands that read a node's config: the daemon, its workloads, its routes and state."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import sys
from pathlib import Path
from typing import Any

from routed import api
from routed import log as logsetup
from routed.cli.common import (
    DEFAULT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    ask_daemon,
    node_config,
)
from routed.cli.render import filter_routes, print_workloads, reload_text, route_line
from routed.config import ConfigError, NodeConfig, load_config, parse_config

RT_PROTOS_FILE = Path("/etc/iproute2/rt_protos.d/routed.conf")


def cmd_config_check(args: argparse.Namespace) -> int:
    """Each file on its own, then with --fabric the fabric they make together."""
    from routed.config import read_document, refuse_readable_secrets
    from routed.config.fabric import CheckedFile, fabric_problems

    status = EXIT_OK
    checked = []
    for name in args.files:
        try:
            text = read_document(name)
            cfg = parse_config(text, name)
            refuse_readable_secrets(name, text, cfg)
            checked.append(CheckedFile(name, text, cfg))
            print(f"{name}: ok")
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            status = EXIT_USAGE
    problems = fabric_problems(checked) if args.fabric else []
    for problem in problems:
        print(problem, file=sys.stderr)
    return EXIT_USAGE if problems else status


def cmd_run(args: argparse.Namespace) -> int:
    cfg = node_config(args.config)
    logsetup.setup(args.log_level, args.log_format)
    _install_protocol_name()
    from routed.daemon import Daemon
    from routed.gctune import tune
    from routed.ipam.backends import IpamError
    from routed.statefile import StateFileError
    from routed.workloads.store import StoreError

    tune()
    try:
        asyncio.run(Daemon(cfg, args.log_format, config_path=str(Path(args.config).resolve())).run())
    except (StateFileError, StoreError, IpamError) as exc:
        # a state file that is not what routed wrote: say which, where and what to do, and start
        # nothing (the kernel keeps what it has), rather than guess what was meant
        logging.getLogger("routed").error(logsetup.event("start_refused", reason=exc))
        print(f"routed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _install_protocol_name() -> None:
    """Let `ip route` print `proto routed`; cosmetic, so failure is not fatal."""
    from routed.fib.routes import ROUTE_PROTOCOL, ROUTE_PROTOCOL_NAME

    line = f"{ROUTE_PROTOCOL}\t{ROUTE_PROTOCOL_NAME}\n"
    try:
        if not RT_PROTOS_FILE.exists() or RT_PROTOS_FILE.read_text() != line:
            RT_PROTOS_FILE.parent.mkdir(parents=True, exist_ok=True)
            RT_PROTOS_FILE.write_text(line)
    except OSError:
        pass


def cmd_workload(args: argparse.Namespace) -> int:
    from routed.workloads import direct

    cfg = node_config(args.config)
    request: dict[str, Any] = {"id": getattr(args, "id", None)}
    if args.action == "add":
        for ip in args.ip:
            try:
                ipaddress.ip_address(ip)
            except ValueError as exc:
                raise CliError(f"--ip {ip!r} is not an IP address; e.g. --ip 10.65.0.7", EXIT_USAGE) from exc
        request.update(netns=args.netns, ips=args.ip, ifname=args.ifname)
    op = {"add": "workload.add", "del": "workload.del", "list": "workload.list"}[args.action]
    try:
        result = ask_daemon(cfg.api.socket, op, when_down=None, **request)
    except api.DaemonNotRunning:
        try:
            result = _workload_direct(args, cfg)
        except direct.DaemonAppeared:
            result = ask_daemon(cfg.api.socket, op, when_down=None, **request)
    if args.action == "list":
        print_workloads(result, args.json)
    else:
        verb = "attached" if args.action == "add" else "detached"
        print(f"{verb} {result['id']}: {' '.join(result['ips'])} (host veth {result['host_ifname']})")
    return EXIT_OK


def _workload_direct(args: argparse.Namespace, cfg: NodeConfig) -> Any:
    """No daemon: do the work here, touching only this workload's routes."""
    from routed.dataplane.workload import WorkloadError
    from routed.ipam.backends import IpamError
    from routed.views import workload_json
    from routed.workloads import direct
    from routed.workloads.manager import NotFound, UsageError

    if args.action == "list":
        return [workload_json(w) for w in direct.workloads(cfg)]
    guard = direct.daemon_guard(cfg.api.socket)
    try:
        if args.action == "add":
            ips = [ipaddress.ip_address(ip) for ip in args.ip]
            spec = asyncio.run(direct.attach(cfg, args.id, args.netns, ips, args.ifname, guard))
        else:
            spec = asyncio.run(direct.detach(cfg, args.id, guard))
    except UsageError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except (NotFound, WorkloadError, IpamError) as exc:
        raise CliError(str(exc), EXIT_FAILURE) from exc
    return workload_json(spec)


def cmd_routes(args: argparse.Namespace) -> int:
    """Routes of proto routed: from the daemon (with why each won), else straight from the kernel."""
    from routed.fib.kernel import NetlinkKernel
    from routed.fib.routes import MAIN_TABLE
    from routed.views import route_json

    have_config = args.config != DEFAULT_CONFIG or Path(args.config).exists()
    cfg = node_config(args.config) if have_config else None
    table = cfg.fib.table if cfg else MAIN_TABLE

    async def read_kernel() -> list[dict[str, Any]]:
        kernel = NetlinkKernel(table)
        try:
            view = await kernel.dump()
        finally:
            await kernel.close()
        return [route_json(r) for r in view.ours.values()]

    try:
        if cfg is None:
            raise api.DaemonNotRunning("no config")
        routes = ask_daemon(cfg.api.socket, "routes", when_down=None)
    except api.DaemonNotRunning:
        routes = asyncio.run(read_kernel())
    routes.sort(key=lambda r: (":" in r["dst"], ipaddress.ip_network(r["dst"])))
    routes = filter_routes(routes, args.prefix, args.peer, args.stale)
    if args.json:
        print(json.dumps(routes, indent=2))
    else:
        for route in routes:
            print(route_line(route))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    cfg = node_config(args.config)
    result = ask_daemon(cfg.api.socket, "status", when_down="start it with `routed run -c FILE`")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        from routed.views import status_text

        print(status_text(result))
    return EXIT_OK


def cmd_ipam(args: argparse.Namespace) -> int:
    """From the node's own state on disk: the same answer with or without a daemon."""
    from routed.ipam.backends import make_ipam
    from routed.views import ipam_json, ipam_text
    from routed.workloads.store import WorkloadStore

    cfg = node_config(args.config)
    store = WorkloadStore(cfg.state_dir)
    with store.locked():
        workloads = list(store.load().values())
    result = ipam_json(cfg, make_ipam(cfg), workloads)
    print(json.dumps(result, indent=2) if args.json else ipam_text(result))
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    cfg = node_config(args.config)
    result = ask_daemon(cfg.api.socket, "stop", when_down="nothing to stop", withdraw=args.withdraw)
    if args.withdraw:
        print(f"withdrew {result['withdrawn']} routes, closed every session with a Cease; daemon stopping")
    else:
        print("daemon stopping; peers keep our routes for our restart time (graceful restart)")
    return EXIT_OK


def cmd_drain(args: argparse.Namespace) -> int:
    cfg = node_config(args.config)
    result = ask_daemon(cfg.api.socket, "drain", when_down="nothing to drain", on=not args.undo)
    if result["draining"]:
        print(f"draining: {result['routes']} routes re-announced with GRACEFUL_SHUTDOWN (65535:0)")
    else:
        print(f"drain undone: {result['routes']} routes announced normally again")
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    """Have the daemon re-read its config file. It checks the file (FILE:LINE:COL, exit 2) and
    logs what it refused; a broken file here still reaches a daemon on the default socket."""
    from routed.config.services import Api

    try:
        socket_path, problems = load_config(args.config).api.socket, None
    except ConfigError as exc:
        socket_path, problems = Api().socket, exc
    try:
        result = ask_daemon(socket_path, "reload", when_down=None, timeout=60)
    except api.DaemonNotRunning as exc:
        if problems is not None:
            raise CliError(
                f"{problems}\nrouted: invalid config; no daemon answers either", EXIT_USAGE
            ) from exc
        raise CliError(f"no routed daemon answers on {socket_path}; nothing to reload") from exc
    print(reload_text(result))
    return EXIT_OK
