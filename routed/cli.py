"""The `routed` command line.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error. Errors go to
stderr and say what is wrong and what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from routed import __version__
from routed import log as logsetup
from routed.config import ConfigError, NodeConfig, load_config, parse_config

DEFAULT_CONFIG = os.environ.get("ROUTED_CONFIG", "/etc/routed/routed.yaml")
RT_PROTOS_FILE = Path("/etc/iproute2/rt_protos.d/routed.conf")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routed", description="L3 routing daemon for container hosts")
    parser.add_argument("--version", action="version", version=f"routed {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-c",
            "--config",
            default=DEFAULT_CONFIG,
            help=f"node config file (default {DEFAULT_CONFIG}, or $ROUTED_CONFIG)",
        )

    run = sub.add_parser("run", help="run the daemon")
    with_config(run)
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", default="text", choices=["text", "json"])

    config = sub.add_parser("config", help="config tools").add_subparsers(dest="action", required=True)
    check = config.add_parser("check", help="validate configs: every problem, exit 2 if any is bad")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument(
        "--fabric",
        action="store_true",
        help="the files are the nodes of one fabric: also refuse a block listed by two nodes, "
        "differing block sizes and repeated node names",
    )

    workload = sub.add_parser("workload", help="attach, detach and list workloads")
    actions = workload.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="attach a workload's network namespace")
    add.add_argument("id", help="workload id (stable; names its host veth)")
    add.add_argument("--netns", required=True, help="netns name (under /run/netns) or path")
    add.add_argument(
        "--ip",
        action="append",
        default=[],
        metavar="ADDR",
        help="address from a pool (repeat for IPv4 and IPv6); default: next free",
    )
    add.add_argument("--ifname", default="eth0", help="interface name inside the netns")
    with_config(add)
    delete = actions.add_parser("del", help="detach a workload")
    delete.add_argument("id")
    with_config(delete)
    listing = actions.add_parser("list", help="list workloads")
    listing.add_argument("--json", action="store_true")
    with_config(listing)

    status = sub.add_parser("status", help="ask the running daemon how it is doing")
    status.add_argument("--json", action="store_true")
    with_config(status)

    ipam = sub.add_parser("ipam", help="this node's address blocks and how full they are")
    ipam.add_argument("--json", action="store_true")
    with_config(ipam)

    cni = sub.add_parser("cni", help="the CNI plugin for podman, containerd, Kubernetes")
    cni_actions = cni.add_subparsers(dest="action", required=True)
    cni_install = cni_actions.add_parser("install", help="link routed-cni into the CNI plugin directory")
    cni_install.add_argument(
        "--bin-dir", type=Path, help="default: /usr/lib/cni if it exists, else /opt/cni/bin"
    )
    cni_install.add_argument("--conf-dir", type=Path, default=Path("/etc/cni/net.d"))
    cni_install.add_argument("--no-network", action="store_true", help="do not write 87-routed.conflist")
    cni_install.add_argument("--force", action="store_true", help="replace an existing 87-routed.conflist")
    with_config(cni_install)

    lab = sub.add_parser("lab", help="run containerlab topologies as network namespaces (no Docker)")
    lab_actions = lab.add_subparsers(dest="action", required=True)
    for action, text in (
        ("up", "create the lab's namespaces, links and processes"),
        ("down", "remove everything the lab made (safe to repeat, also after a crash)"),
        ("inspect", "show the lab's nodes, namespaces, addresses and state"),
        ("exec", "run a command in a node: routed lab exec FILE NODE -- CMD..."),
        ("start", "start a node's daemon again after it stopped or crashed: routed lab start FILE NODE"),
    ):
        p = lab_actions.add_parser(action, help=text)
        p.add_argument("topology", metavar="FILE", help="a containerlab topology (*.clab.yml)")
        p.add_argument("--name", help="override the lab name (as containerlab deploy --name)")
        p.add_argument("--prefix", help="override the namespace prefix (default: the file's, else clab)")
        if action in ("exec", "start"):
            p.add_argument("node")
        if action == "exec":
            p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD")
        if action == "inspect":
            p.add_argument("--json", action="store_true")

    routes = sub.add_parser("routes", help="show routed's kernel routes (proto routed)")
    routes.add_argument("--json", action="store_true")
    routes.add_argument("--stale", action="store_true", help="only routes kept through a peer's restart")
    routes.add_argument(
        "--prefix",
        type=_network_arg,
        help="only this prefix and those inside it; an address shows the route it takes (longest match)",
    )
    routes.add_argument(
        "--peer", type=ipaddress.ip_address, help="only routes whose best path is from this peer"
    )
    with_config(routes)
    stop = sub.add_parser(
        "stop",
        help="stop the daemon; peers keep our routes for our restart time (graceful restart)",
    )
    stop.add_argument(
        "--withdraw",
        action="store_true",
        help="withdraw every route and close sessions with a Cease first: peers drop our routes at once "
        "(decommissioning a host)",
    )
    with_config(stop)
    drain = sub.add_parser(
        "drain",
        help="graceful shutdown (RFC 8326): peers move traffic off our routes before the host goes",
    )
    drain.add_argument("--undo", action="store_true", help="stop draining: our routes are preferred again")
    with_config(drain)
    service = sub.add_parser("service", help="run routed under systemd")
    service_actions = service.add_subparsers(dest="action", required=True)
    service_install = service_actions.add_parser(
        "install", help="write routed.service (Type=notify, hardened) for this install and config"
    )
    service_install.add_argument("--unit-dir", type=Path, default=Path("/etc/systemd/system"))
    service_install.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    with_config(service_install)
    reload = sub.add_parser(
        "reload", help="apply the config file's changes to the running daemon (as SIGHUP does)"
    )
    with_config(reload)
    return parser


def _network_arg(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a prefix or address, e.g. 10.65.1.0/24") from exc


def filter_routes(
    routes: list[dict[str, Any]],
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None,
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
    stale: bool = False,
) -> list[dict[str, Any]]:
    """`routed routes` filters. A prefix keeps itself and what lies inside it; a lone address
    (a /32 or /128 nobody routes as such) keeps the longest route covering it."""
    if stale:
        routes = [r for r in routes if r.get("stale")]
    if peer is not None:
        routes = [r for r in routes if r.get("peer") == str(peer)]
    if prefix is not None:
        nets = [(r, ipaddress.ip_network(r["dst"])) for r in routes]
        nets = [(r, n) for r, n in nets if n.version == prefix.version]
        inside = [r for r, n in nets if n.subnet_of(prefix)]  # type: ignore[arg-type]
        if inside or prefix.prefixlen < prefix.max_prefixlen:
            return inside
        covering = [(n.prefixlen, r) for r, n in nets if prefix.subnet_of(n)]  # type: ignore[arg-type]
        return [max(covering, key=lambda c: c[0])[1]] if covering else []
    return routes


def _config(path: str) -> NodeConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CliError(
            f"{exc}\nrouted: invalid config; nothing was changed. "
            "Fix the fields above (see config/README.md).",
            EXIT_USAGE,
        ) from exc


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
    cfg = _config(args.config)
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


def _print_workloads(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(items, indent=2))
        return
    print(f"{'ID':<24} {'NETNS':<24} {'HOST VETH':<15} IPS")
    for w in items:
        where = w["netns"] or f"({w.get('runtime') or '?'})"  # Docker's sandbox is Docker's to name
        print(f"{w['id']:<24} {where:<24} {w['host_ifname']:<15} {' '.join(w['ips'])}")


def cmd_workload(args: argparse.Namespace) -> int:
    from routed import api
    from routed.views import workload_json

    cfg = _config(args.config)
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
        try:
            result = api.call(cfg.api.socket, op, **request)
        except api.DaemonNotRunning:
            try:
                result = asyncio.run(_workload_direct(cfg, args))
                result = (
                    [workload_json(w) for w in result] if args.action == "list" else workload_json(result)
                )
            except DaemonAppeared:
                result = api.call(cfg.api.socket, op, **request)
    except api.ApiError as exc:
        raise CliError(str(exc), exc.exit_code) from exc
    if args.action == "list":
        _print_workloads(result, args.json)
    else:
        verb = "attached" if args.action == "add" else "detached"
        print(f"{verb} {result['id']}: {' '.join(result['ips'])} (host veth {result['host_ifname']})")
    return EXIT_OK


class DaemonAppeared(Exception):
    pass


def _no_daemon(socket_path: str) -> None:
    """Called under the store lock: if a daemon came up meanwhile, it must do the work."""
    from routed import api

    try:
        api.call(socket_path, "status", timeout=5)
    except (api.DaemonNotRunning, api.ApiError, OSError):
        return
    raise DaemonAppeared


async def _workload_direct(cfg: NodeConfig, args: argparse.Namespace) -> Any:
    """No daemon: do the work here, touching only this workload's routes."""
    from routed.dataplane import sysctl
    from routed.dataplane.workload import WorkloadError
    from routed.fib.kernel import NetlinkKernel
    from routed.fib.reconciler import apply_once
    from routed.ipam.backends import IpamError
    from routed.workloads.manager import NotFound, UsageError, WorkloadManager
    from routed.workloads.store import WorkloadStore

    manager = WorkloadManager(cfg, WorkloadStore(cfg.state_dir))
    if args.action == "list":
        return manager.all()
    kernel = NetlinkKernel(cfg.fib.table)
    try:
        if args.action == "add":
            sysctl.enable_forwarding(ipv6=any(p.version == 6 for p in cfg.pools))
            ips = [ipaddress.ip_address(ip) for ip in args.ip]
            spec = await manager.add(
                args.id, args.netns, ips, args.ifname, guard=lambda: _no_daemon(cfg.api.socket)
            )
            await apply_once(kernel, spec.routes(cfg.fib.table), {r.key for r in spec.routes(cfg.fib.table)})
        else:
            spec = await manager.delete(args.id, guard=lambda: _no_daemon(cfg.api.socket))
            await apply_once(kernel, [], {r.key for r in spec.routes(cfg.fib.table)})
        return spec
    except UsageError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except (NotFound, WorkloadError, IpamError) as exc:
        raise CliError(str(exc), EXIT_FAILURE) from exc
    finally:
        await kernel.close()
        await manager.ipam.close()


def cmd_routes(args: argparse.Namespace) -> int:
    """Routes of proto routed: from the daemon (with why each won), else straight from the kernel."""
    from routed import api
    from routed.fib.kernel import NetlinkKernel
    from routed.fib.routes import MAIN_TABLE
    from routed.views import route_json

    have_config = args.config != DEFAULT_CONFIG or Path(args.config).exists()
    cfg = _config(args.config) if have_config else None
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
        routes = api.call(cfg.api.socket, "routes")
    except api.DaemonNotRunning:
        routes = asyncio.run(read_kernel())
    routes.sort(key=lambda r: (":" in r["dst"], ipaddress.ip_network(r["dst"])))
    routes = filter_routes(routes, args.prefix, args.peer, args.stale)
    if args.json:
        print(json.dumps(routes, indent=2))
        return EXIT_OK
    for r in routes:
        hops = " ".join(
            f"via {h['gateway']}" if "gateway" in h else f"dev {h['device']}" for h in r["nexthops"]
        ) or r.get("type", "")
        line = f"{r['dst']:<20} {hops:<22}"
        if r.get("source") == "local":
            line += " local workload"
        elif r.get("source") == "bgp":
            best = f"best of {r['paths']}: {r['reason']}" if r.get("paths", 1) > 1 else r["reason"]
            line += f" bgp from {r['peer']} ({best})"
            if r.get("originator_id"):
                line += f" originator {r['originator_id']} cluster-list {','.join(r['cluster_list'])}"
            if r.get("stale"):
                line += " [stale]" if r["stale"] == "stale" else " [long-lived stale]"
        print(line.rstrip())
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from routed import api

    cfg = _config(args.config)
    try:
        result = api.call(cfg.api.socket, "status")
    except api.DaemonNotRunning as exc:
        raise CliError(
            f"no routed daemon answers on {cfg.api.socket}; start it with `routed run -c FILE`"
        ) from exc
    except api.ApiError as exc:
        raise CliError(str(exc), exc.exit_code) from exc
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

    cfg = _config(args.config)
    store = WorkloadStore(cfg.state_dir)
    with store.locked():
        workloads = list(store.load().values())
    result = ipam_json(cfg, make_ipam(cfg), workloads)
    print(json.dumps(result, indent=2) if args.json else ipam_text(result))
    return EXIT_OK


def cmd_cni(args: argparse.Namespace) -> int:
    from routed.cni.install import install

    cfg = _config(args.config)
    conf_dir = None if args.no_network else args.conf_dir
    try:
        for line in install(args.bin_dir, conf_dir, cfg.api.socket, str(args.config), args.force):
            print(line)
    except OSError as exc:
        raise CliError(f"cannot install the CNI plugin: {exc}") from exc
    return EXIT_OK


def _daemon_call(cfg: NodeConfig, op: str, timeout: float = 30, **request: Any) -> Any:
    from routed import api

    try:
        return api.call(cfg.api.socket, op, timeout=timeout, **request)
    except api.DaemonNotRunning as exc:
        raise CliError(f"no routed daemon answers on {cfg.api.socket}; nothing to {op}") from exc
    except api.ApiError as exc:
        raise CliError(str(exc), exc.exit_code) from exc


def cmd_stop(args: argparse.Namespace) -> int:
    cfg = _config(args.config)
    result = _daemon_call(cfg, "stop", withdraw=args.withdraw)
    if args.withdraw:
        print(f"withdrew {result['withdrawn']} routes, closed every session with a Cease; daemon stopping")
    else:
        print("daemon stopping; peers keep our routes for our restart time (graceful restart)")
    return EXIT_OK


def cmd_drain(args: argparse.Namespace) -> int:
    cfg = _config(args.config)
    result = _daemon_call(cfg, "drain", on=not args.undo)
    if result["draining"]:
        print(f"draining: {result['routes']} routes re-announced with GRACEFUL_SHUTDOWN (65535:0)")
    else:
        print(f"drain undone: {result['routes']} routes announced normally again")
    return EXIT_OK


def cmd_service(args: argparse.Namespace) -> int:
    from routed import service

    config = str(Path(args.config).resolve())
    _config(config)  # a unit for a config that does not load would fail at every start
    if args.print:
        print(service.unit_text(config), end="")
        return EXIT_OK
    try:
        path = service.install(config, args.unit_dir)
    except OSError as exc:
        raise CliError(f"cannot write the unit into {args.unit_dir}: {exc.strerror}; run as root") from exc
    print(f"wrote {path}\nnow: systemctl daemon-reload && systemctl enable --now routed")
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    """Have the daemon re-read its config file. It checks the file (FILE:LINE:COL, exit 2) and
    logs what it refused; a broken file here still reaches a daemon on the default socket."""
    from routed import api
    from routed.config.schema import Api

    try:
        socket_path, problems = load_config(args.config).api.socket, None
    except ConfigError as exc:
        socket_path, problems = Api().socket, exc
    try:
        result = api.call(socket_path, "reload", timeout=60)
    except api.DaemonNotRunning as exc:
        if problems is not None:
            raise CliError(
                f"{problems}\nrouted: invalid config; no daemon answers either", EXIT_USAGE
            ) from exc
        raise CliError(f"no routed daemon answers on {socket_path}; nothing to reload") from exc
    except api.ApiError as exc:
        raise CliError(str(exc), exc.exit_code) from exc
    if not result["changed"]:
        print("reload: no changes")
        return EXIT_OK
    print(f"reload: changed {', '.join(result['changed'])}")
    for key, label in (
        ("peers_added", "peers added"),
        ("peers_removed", "peers removed (sent a Cease)"),
        ("peers_reset", "sessions reset (their settings or TCP-MD5 key changed)"),
        ("bfd_rekeyed", "BFD sessions given a new key"),
        ("workloads_added", "workloads attached"),
        ("workloads_left_attached", "workloads no longer in the file, left attached (routed workload del)"),
    ):
        if result[key]:
            print(f"  {label}: {', '.join(result[key])}")
    if result["routes_rejudged"]:
        print("  received routes judged again by the new import policy")
    if result["exports_resent"]:
        print("  announcements sent again with the new export settings")
    return EXIT_OK


def cmd_lab(args: argparse.Namespace) -> int:
    from routed.lab import runner
    from routed.lab.topology import load_topology

    try:
        topo = load_topology(args.topology, name=args.name, prefix=args.prefix)
    except ConfigError as exc:
        raise CliError(f"{exc}\nrouted: invalid topology; nothing was created.", EXIT_USAGE) from exc
    try:
        if args.action == "up":
            runner.up(topo)
            print(f"lab {topo.full_name} is up ({len(topo.nodes)} nodes, {len(topo.links)} links)")
            _print_lab(runner.inspect(topo), as_json=False)
        elif args.action == "down":
            removed = runner.down(topo)
            print(f"lab {topo.full_name} is down ({len(removed)} namespaces removed)")
        elif args.action == "inspect":
            _print_lab(runner.inspect(topo), as_json=args.json)
        elif args.action == "start":
            pid = runner.start(topo, args.node)
            print(f"node {args.node}: entrypoint started again (pid {pid})")
        else:
            argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not argv:
                raise CliError("give a command after --: routed lab exec FILE NODE -- CMD...", EXIT_USAGE)
            return runner.run_in_node(topo, args.node, argv, timeout=None).returncode
    except runner.LabError as exc:
        raise CliError(str(exc), EXIT_FAILURE) from exc
    return EXIT_OK


def _print_lab(statuses: list[Any], as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "name": s.name,
                        "netns": s.netns,
                        "image": s.image,
                        "state": s.state,
                        "pid": s.pid,
                        "ipv4": list(s.ipv4),
                        "ipv6": list(s.ipv6),
                    }
                    for s in statuses
                ],
                indent=2,
            )
        )
        return
    rows = [("#", "NODE", "NETNS", "STATE", "PID", "IPV4", "IMAGE")]
    for index, s in enumerate(statuses, 1):
        rows.append(
            (str(index), s.name, s.netns, s.state, str(s.pid or "-"), ", ".join(s.ipv4) or "-", s.image)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {
        "run": cmd_run,
        "config": cmd_config_check,
        "workload": cmd_workload,
        "routes": cmd_routes,
        "status": cmd_status,
        "ipam": cmd_ipam,
        "cni": cmd_cni,
        "lab": cmd_lab,
        "stop": cmd_stop,
        "drain": cmd_drain,
        "reload": cmd_reload,
        "service": cmd_service,
    }
    try:
        return handlers[args.command](args)
    except CliError as exc:
        print(f"routed: {exc}", file=sys.stderr)
        return exc.exit_code
    except PermissionError as exc:
        print(f"routed: {exc}; run as root", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
