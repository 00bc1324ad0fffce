"""The `routed` argument parser: one small function per command."""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path
from typing import Any

from routed import __version__
from routed.cli.common import DEFAULT_CONFIG

SubParsers = Any  # argparse's _SubParsersAction, private


def with_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        help=f"node config file (default {DEFAULT_CONFIG}, or $ROUTED_CONFIG)",
    )


def network_arg(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a prefix or address, e.g. 10.65.1.0/24") from exc


def _add_run(sub: SubParsers) -> None:
    run = sub.add_parser("run", help="run the daemon")
    with_config(run)
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", default="text", choices=["text", "json"])


def _add_config(sub: SubParsers) -> None:
    config = sub.add_parser("config", help="config tools").add_subparsers(dest="action", required=True)
    check = config.add_parser("check", help="validate configs: every problem, exit 2 if any is bad")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument(
        "--fabric",
        action="store_true",
        help="the files are the nodes of one fabric: also refuse a block listed by two nodes, "
        "differing block sizes and repeated node names",
    )


def _add_workload(sub: SubParsers) -> None:
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


def _add_status(sub: SubParsers) -> None:
    status = sub.add_parser("status", help="ask the running daemon how it is doing")
    status.add_argument("--json", action="store_true")
    with_config(status)


def _add_ipam(sub: SubParsers) -> None:
    ipam = sub.add_parser("ipam", help="this node's address blocks and how full they are")
    ipam.add_argument("--json", action="store_true")
    with_config(ipam)


def _add_cni(sub: SubParsers) -> None:
    cni = sub.add_parser("cni", help="the CNI plugin for podman, containerd, Kubernetes")
    cni_actions = cni.add_subparsers(dest="action", required=True)
    cni_install = cni_actions.add_parser("install", help="link routed-cni into the CNI plugin directory")
    cni_install.add_argument(
        "--bin-dir", type=Path, help="default: /usr/lib/cni if it exists, else /opt/cni/bin"
    )
    cni_install.add_argument("--conf-dir", type=Path, default=Path("/etc/cni/net.d"))
    cni_install.add_argument("--no-network", action="store_true", help="do not write 10-routed.conflist")
    cni_install.add_argument("--force", action="store_true", help="replace an existing 10-routed.conflist")
    with_config(cni_install)


def _add_lab(sub: SubParsers) -> None:
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
    generate = lab_actions.add_parser(
        "generate",
        help="write a topology of N hosts behind R reflectors (or K ToRs), with every node's config",
    )
    generate.add_argument("directory", metavar="DIR", help="where NAME.clab.yml and NAME/ go")
    generate.add_argument("--name", default="generated", help="the lab's name (default: generated)")
    generate.add_argument("--hosts", type=int, required=True)
    generate.add_argument(
        "--reflectors",
        type=int,
        default=None,
        help="route reflectors on one L2 fabric (default 1; 0 with --tors)",
    )
    generate.add_argument(
        "--tors",
        type=int,
        default=0,
        help="racks instead: each host on a /31 to its rack's ToR (BIRD2), peering eBGP; a spine between",
    )
    generate.add_argument("--workloads", type=int, default=1, help="workloads per host")
    generate.add_argument("--pool", type=ipaddress.IPv4Network, default=ipaddress.IPv4Network("10.65.0.0/16"))
    generate.add_argument("--block-size", type=int, default=26, help="each host's block, a /N of the pool")
    generate.add_argument(
        "--clients",
        choices=("range", "list"),
        default="range",
        help="reflectors accept clients from the fabric's range (default) or list each host",
    )


def _add_routes(sub: SubParsers) -> None:
    routes = sub.add_parser("routes", help="show routed's kernel routes (proto routed)")
    routes.add_argument("--json", action="store_true")
    routes.add_argument("--stale", action="store_true", help="only routes kept through a peer's restart")
    routes.add_argument(
        "--prefix",
        type=network_arg,
        help="only this prefix and those inside it; an address shows the route it takes (longest match)",
    )
    routes.add_argument(
        "--peer", type=ipaddress.ip_address, help="only routes whose best path is from this peer"
    )
    with_config(routes)


def _add_stop(sub: SubParsers) -> None:
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


def _add_drain(sub: SubParsers) -> None:
    drain = sub.add_parser(
        "drain",
        help="graceful shutdown (RFC 8326): peers move traffic off our routes before the host goes",
    )
    drain.add_argument("--undo", action="store_true", help="stop draining: our routes are preferred again")
    with_config(drain)


def _add_service(sub: SubParsers) -> None:
    service = sub.add_parser("service", help="run routed under systemd")
    service_actions = service.add_subparsers(dest="action", required=True)
    service_install = service_actions.add_parser(
        "install", help="write routed.service (Type=notify, hardened) for this install and config"
    )
    service_install.add_argument("--unit-dir", type=Path, default=Path("/etc/systemd/system"))
    service_install.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    with_config(service_install)


def _add_reload(sub: SubParsers) -> None:
    reload = sub.add_parser(
        "reload", help="apply the config file's changes to the running daemon (as SIGHUP does)"
    )
    with_config(reload)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="routed", description="L3 routing daemon for container hosts")
    top.add_argument("--version", action="version", version=f"routed {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_config(sub)
    _add_workload(sub)
    _add_status(sub)
    _add_ipam(sub)
    _add_cni(sub)
    _add_lab(sub)
    _add_routes(sub)
    _add_stop(sub)
    _add_drain(sub)
    _add_service(sub)
    _add_reload(sub)
    return top
