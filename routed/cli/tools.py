"""The commands that set a host up: the CNI plugin, the systemd unit, and labs."""

from __future__ import annotations

import argparse
from pathlib import Path

from routed.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliError, node_config
from routed.cli.render import print_lab
from routed.config import ConfigError


def cmd_cni(args: argparse.Namespace) -> int:
    from routed.cni.install import install

    cfg = node_config(args.config)
    conf_dir = None if args.no_network else args.conf_dir
    try:
        for line in install(args.bin_dir, conf_dir, cfg.api.socket, str(args.config), args.force):
            print(line)
    except OSError as exc:
        raise CliError(f"cannot install the CNI plugin: {exc}") from exc
    return EXIT_OK


def cmd_service(args: argparse.Namespace) -> int:
    from routed import service

    config = str(Path(args.config).resolve())
    node_config(config)  # a unit for a config that does not load would fail at every start
    if args.print:
        print(service.unit_text(config), end="")
        return EXIT_OK
    try:
        path = service.install(config, args.unit_dir)
    except OSError as exc:
        raise CliError(f"cannot write the unit into {args.unit_dir}: {exc.strerror}; run as root") from exc
    print(f"wrote {path}\nnow: systemctl daemon-reload && systemctl enable --now routed")
    return EXIT_OK


def cmd_lab_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from routed.lab.generate import GenerateError, LabPlan, generate

    plan = LabPlan(
        args.name,
        args.hosts,
        args.reflectors if args.reflectors is not None else (0 if args.tors else 1),
        args.workloads,
        args.pool,
        args.block_size,
        clients=args.clients,
        tors=args.tors,
    )
    try:
        files = generate(plan)
    except GenerateError as exc:
        raise CliError(f"{exc}; nothing was written", EXIT_USAGE) from exc
    root = Path(args.directory)
    try:
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o600 if path.suffix == ".yaml" else 0o644)
    except OSError as exc:
        raise CliError(f"cannot write into {root}: {exc.strerror}", EXIT_FAILURE) from exc
    print(f"wrote {root / f'{plan.name}.clab.yml'} and {len(files) - 1} node configs in {root / plan.name}/")
    print(f"bring it up: routed lab up {root / f'{plan.name}.clab.yml'}")
    return EXIT_OK


def cmd_lab(args: argparse.Namespace) -> int:
    from routed.lab import runner
    from routed.lab.topology import load_topology

    if args.action == "generate":
        return cmd_lab_generate(args)

    try:
        topo = load_topology(args.topology, name=args.name, prefix=args.prefix)
    except ConfigError as exc:
        raise CliError(f"{exc}\nrouted: invalid topology; nothing was created.", EXIT_USAGE) from exc
    try:
        if args.action == "up":
            runner.up(topo)
            print(f"lab {topo.full_name} is up ({len(topo.nodes)} nodes, {len(topo.links)} links)")
            print_lab(runner.inspect(topo), as_json=False)
        elif args.action == "down":
            removed = runner.down(topo)
            print(f"lab {topo.full_name} is down ({len(removed)} namespaces removed)")
        elif args.action == "inspect":
            print_lab(runner.inspect(topo), as_json=args.json)
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
