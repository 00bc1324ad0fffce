"""Bring a labs/*.clab.yml topology up for a test, and always take it down.

Each test gets its own lab name (`rt-<hex>-<node>` namespaces), so tests never
collide with each other or with a lab a person has up.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bgp import procfs
from routed import api
from routed.lab import runner
from routed.lab.topology import Topology, load_topology

LABS = Path(__file__).resolve().parents[1] / "labs"
ROUTED = [sys.executable, "-m", "routed.cli"]


@dataclass
class Lab:
    file: Path
    name: str
    prefix: str = "rt"

    @property
    def selector(self) -> list[str]:
        return [str(self.file), "--name", self.name, "--prefix", self.prefix]

    def cli(
        self, action: str, *extra: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*ROUTED, "lab", action, *self.selector, *extra], capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"routed lab {action} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    @functools.cached_property
    def topology(self) -> Topology:
        return load_topology(self.file, name=self.name, prefix=self.prefix)

    def exec(
        self, node: str, *argv: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """What `routed lab exec` does, without starting a Python for it: tests poll nodes
        often, and two interpreters per poll kept a core busy (tests/integration test the
        CLI's own exec)."""
        try:
            result = runner.run_in_node(self.topology, node, argv, capture=True, timeout=timeout)
        except runner.LabError as exc:
            result = subprocess.CompletedProcess(list(argv), 1, "", f"routed: {exc}\n")
        if check and result.returncode != 0:
            raise AssertionError(
                f"routed lab exec {node} -- {' '.join(argv)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def api(self, node: str, op: str, **fields: Any) -> Any:
        """A request to the node's routed API, from this process: the node's private /run
        through /proc/PID/root."""
        pid = runner.holder_pid(self.topology, node)
        return api.call(f"/proc/{pid}/root/run/routed/routed.sock", op, **fields)

    def birdc(self, node: str, *args: str) -> str:
        """birdc on a BIRD2 node of the lab; empty-handed while BIRD is still starting."""
        return self.exec(node, "birdc", "-s", "/run/bird/bird.ctl", *args, check=False).stdout

    def netns(self, node: str) -> str:
        return f"{self.prefix}-{self.name}-{node}"

    def inspect(self) -> list[dict[str, Any]]:
        return list(json.loads(self.cli("inspect", "--json").stdout))

    def log(self, node: str) -> str:
        path = Path("/run/routed-lab") / f"{self.prefix}-{self.name}" / "logs" / f"{node}.log"
        return path.read_text() if path.exists() else ""

    def start(self, node: str) -> None:
        """Start the node's daemon again, as `docker start` would after it stopped or crashed."""
        self.cli("start", node)


def generate_lab(root: Path, name: str, *options: str) -> Path:
    """`routed lab generate` as a user runs it: NAME.clab.yml and NAME/ under root."""
    subprocess.run(
        [*ROUTED, "lab", "generate", str(root), "--name", name, *options], check=True, capture_output=True
    )
    return root / f"{name}.clab.yml"


def new_lab(topology: str | Path) -> Lab:
    file = topology if isinstance(topology, Path) else LABS / f"{topology}.clab.yml"
    return Lab(file, uuid.uuid4().hex[:8])


@contextmanager
def running_lab(topology: str | Path) -> Iterator[Lab]:
    lab = new_lab(topology)
    started = time.time()
    try:
        lab.cli("up")
        yield lab
    except BaseException:
        print_logs(lab, started)  # shown with the failure: a lab test that fails in CI explains itself
        raise
    finally:
        lab.cli("down", check=False)


LOG_TAIL = 40


def print_logs(lab: Lab, since: float | None = None) -> None:
    """The last lines of every node's log, before `down` takes them away; then, last (CI
    shows the end of a long failure), every node's processes with their state, so a daemon
    that died, froze (T) or hangs (D) says so."""
    logs = Path("/run/routed-lab") / f"{lab.prefix}-{lab.name}" / "logs"
    for path in sorted(logs.glob("*.log")) if logs.is_dir() else []:
        tail = path.read_text(errors="replace").splitlines()[-LOG_TAIL:]
        print(f"---- {path.stem}: last {len(tail)} lines of its log", *tail, sep="\n")
    if since is not None:
        print("---- the other tests meanwhile (time, worker, start/end, test)", *tests_since(since), sep="\n")
    kernel = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout.splitlines()
    deaths = [
        line
        for line in kernel
        if any(w in line.lower() for w in ("segfault", "killed process", "oom", "traps:"))
    ]
    print(
        "---- the kernel on crashed or OOM-killed processes (dmesg)",
        *(deaths[-10:] or ["(nothing)"]),
        sep="\n",
    )
    for node in lab.topology.nodes:
        print(
            f"---- {node.name}: processes at {time.strftime('%H:%M:%S')}",
            *node_processes(lab.netns(node.name)),
            sep="\n",
        )
        if "starts routed" in lab.log(node.name)[:300]:
            print(node_summary(lab, node.name))


def tests_since(since: float) -> list[str]:
    """The test timeline's lines since `since` (tests/conftest.py writes it)."""
    path = os.environ.get("ROUTED_TEST_TIMELINE")
    if not path or not os.path.exists(path):
        return ["(no timeline)"]
    lines = []
    for line in Path(path).read_text().splitlines():
        stamp, rest = line.split(" ", 1)
        if float(stamp) >= since - 240:  # a test that started before the lab may still run
            lines.append(f"{time.strftime('%H:%M:%S', time.localtime(float(stamp)))}{stamp[-4:]} {rest}")
    return lines


def node_summary(lab: Lab, node: str) -> str:
    """One line of a routed node's state: each session, its RIB, its kernel routes, its commands."""
    try:
        pid = runner.holder_pid(lab.topology, node)
        status = api.call(f"/proc/{pid}/root/run/routed/routed.sock", "status", timeout=3)
    except Exception as exc:  # a failure report must not fail: say why there is no status
        return f"  status: {type(exc).__name__}: {exc}"
    bgp = status["bgp"]
    sessions = " ".join(
        f"{p['address']}={p['state']}(rcv {p['received']} acc {p['accepted']} ann {p['announced']})"
        for p in bgp["peers"]
    )
    return (
        f"  status: {sessions}; loc_rib {bgp['loc_rib']} announced {bgp['announced']} "
        f"workloads {status['workloads']} fib {status['fib']['routes']} commands {bgp['counters']}"
    )


def node_processes(netns: str) -> list[str]:
    """`pid state cpu-seconds command` of every process in a network namespace."""
    inode = procfs.ns_inode(f"/run/netns/{netns}")
    if inode is None:
        return ["(no such namespace)"]
    rows = []
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in procfs.in_namespaces({inode}):
        fields, command = procfs.stat(pid), procfs.command_line(pid)
        if fields is None:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        rows.append(f"{pid:>7} {fields[0]} {cpu:7.2f}s {command[:120]}")
    return rows or ["(none)"]


@contextmanager
def lab_variant(
    topology: str, appended: dict[str, str], edits: dict[str, list[tuple[str, str]]] | None = None
) -> Iterator[Path]:
    """A copy of a labs/ topology whose node files get extra YAML appended, e.g.
    {"h1.yaml": "bgp: {graceful_restart: {restart_time: 6}}"}, and whose files (the topology
    itself or a node file, by path: "quickstart/h1.yaml") get text replaced: {path: [(old,
    new), ...]}, each old text required; removed afterwards."""
    root = Path("/tmp") / f"rt-lab-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(LABS / topology, root / topology)
        shutil.copy(LABS / f"{topology}.clab.yml", root)
        for name, text in appended.items():
            with open(root / topology / name, "a") as handle:
                handle.write("\n" + text + "\n")
        for name, replacements in (edits or {}).items():
            path = root / name
            content = path.read_text()
            for old, new in replacements:
                assert old in content, f"{name} has no {old!r} to replace"
                content = content.replace(old, new)
            path.write_text(content)
        # root's alone, as a node config holding an inline password must be (see config/README.md)
        for node_file in (root / topology).rglob("*.yaml"):
            node_file.chmod(0o600)
        yield root / f"{topology}.clab.yml"
    finally:
        shutil.rmtree(root, ignore_errors=True)
