"""An idle host's memory, all its processes, and what each import costs (issue 30, item 5).

The host is the one the issue names: a few workloads, two reflector sessions, metrics on
(the default), from `routed lab generate --hosts 1 --reflectors 2 --workloads W`. Once its
sessions are up and it has idled, every process in its namespace is read from /proc: RSS
(what the budget counts), its peak and PSS. Then the imports, each measured in a fresh
interpreter as the RSS it adds over the ones before it, for the daemon's process and for
ExaBGP's, in the order they load, and for one process holding both (the floor if ExaBGP's
reactor ran inside the daemon).

    python -m bench.footprint [--workloads 3] [--idle 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import node_exec, processes, save, write_generated
from routed.lab import runner
from routed.lab.generate import LabPlan

# (label, statement) in the order the daemon loads them; each adds to the ones before it
DAEMON_IMPORTS = [
    ("interpreter", "pass"),
    ("asyncio (with ssl)", "import asyncio"),
    ("yaml", "import yaml"),
    ("pydantic", "import pydantic"),
    ("prometheus_client", "import prometheus_client"),
    ("h11", "import h11"),
    ("pyroute2", "import pyroute2"),
    ("routed.config (its models built)", "import routed.config"),
    ("bgp (speaker, RIB, ExaBGP edge)", "import bgp.speaker"),
    ("routed.daemon (the rest of routed)", "import routed.daemon"),
]
EXABGP_IMPORTS = [
    ("interpreter", "pass"),
    ("asyncio deferred", "from bgp.exabgp import launch; launch.deferred_asyncio()"),
    ("exabgp.configuration", "import exabgp.configuration.configuration"),
    ("exabgp.reactor", "import exabgp.reactor.loop"),
    ("launcher patches", "launch.patch()"),
    ("exabgp.application", "import exabgp.application.main, exabgp.application.server"),
]
# the floor if ExaBGP ran inside the daemon's process: one interpreter, one asyncio
ONE_PROCESS_IMPORTS = [
    ("interpreter", "pass"),
    ("all the daemon loads", "import routed.daemon"),
    ("exabgp.configuration", "import exabgp.configuration.configuration"),
    ("exabgp.reactor", "import exabgp.reactor.loop"),
    ("launcher patches", "from bgp.exabgp import launch; launch.patch()"),
    ("exabgp.application", "import exabgp.application.main, exabgp.application.server"),
]
MEASURE = """
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
steps, out, before = json.loads(sys.argv[1]), [], rss()
for label, statement in steps:
    exec(statement)
    now = rss()
    out.append([label, now - before, now])
    before = now
print(json.dumps(out))
"""


def import_costs(steps: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """[{import, added_kb, rss_kb}] measured in one fresh interpreter, steps in order."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(steps)], capture_output=True, text=True, check=True
    )
    rows = json.loads(result.stdout)
    rows[0][1] = rows[0][2]  # the interpreter's own: all of its RSS
    return [{"import": label, "added_kb": added, "rss_kb": total} for label, added, total in rows]


def process_memory(netns: str) -> list[dict[str, Any]]:
    """Every process of the node but its placeholder sleeps: command, RSS, peak, PSS (kB)."""
    found = []
    for pid in processes(netns):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            status = Path(f"/proc/{pid}/status").read_text()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        if not cmdline or "sleep infinity" in cmdline:
            continue
        fields = dict(
            (parts[0].rstrip(":"), parts[1])
            for parts in map(str.split, (status + rollup).splitlines())
            if len(parts) > 1
        )
        found.append(
            {
                "command": cmdline[:100],
                "rss_kb": int(fields.get("VmRSS", 0)),
                "peak_kb": int(fields.get("VmHWM", 0)),
                "pss_kb": int(fields.get("Pss", 0)),
            }
        )
    return found


def wait_idle_host(topo: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status: dict[str, Any] = json.loads(node_exec(topo, "h1", "routed", "status", "--json"))
            if (
                all(peer["state"] == "up" for peer in status["bgp"]["peers"])
                and len(status["bgp"]["peers"]) == 2
            ):
                return status
        except (RuntimeError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("h1's two reflector sessions did not come up")
        time.sleep(0.5)


def measure(workloads: int, idle: float) -> dict[str, Any]:
    plan = LabPlan(name="fp", hosts=1, reflectors=2, workloads=workloads)
    with tempfile.TemporaryDirectory(prefix="routed-footprint-") as tmp:
        topo = write_generated(plan, Path(tmp), f"f{uuid.uuid4().hex[:6]}")
        runner.up(topo)
        try:
            status = wait_idle_host(topo, 60)
            time.sleep(idle)
            host = process_memory(topo.node("h1").netns)
            reflector = process_memory(topo.node("rr1").netns)
        finally:
            runner.down(topo)
    return {
        "workloads": status.get("workloads", workloads),
        "metrics": status.get("metrics"),
        "host_processes": host,
        "host_rss_kb": sum(p["rss_kb"] for p in host),
        "host_pss_kb": sum(p["pss_kb"] for p in host),
        "reflector_processes": reflector,
        "daemon_imports": import_costs(DAEMON_IMPORTS),
        "exabgp_imports": import_costs(EXABGP_IMPORTS),
        "one_process_imports": import_costs(ONE_PROCESS_IMPORTS),
    }


def report(data: dict[str, Any]) -> str:
    lines = [f"idle host (2 reflector sessions, {data['workloads']} workloads, metrics {data['metrics']}):"]
    lines += [
        f"  {p['rss_kb'] / 1024:6.1f} MB RSS  {p['pss_kb'] / 1024:6.1f} MB PSS  {p['command']}"
        for p in data["host_processes"]
    ]
    lines.append(f"  {data['host_rss_kb'] / 1024:6.1f} MB RSS in all (PSS {data['host_pss_kb'] / 1024:.1f})")
    for name in ("daemon_imports", "exabgp_imports", "one_process_imports"):
        lines.append(f"{name.replace('_', ' ')}:")
        lines += [
            f"  +{row['added_kb'] / 1024:5.1f} MB = {row['rss_kb'] / 1024:5.1f}  {row['import']}"
            for row in data[name]
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=int, default=3)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds idle before reading memory")
    parser.add_argument("--output", default="footprint")
    args = parser.parse_args()
    data = measure(args.workloads, args.idle)
    print(report(data))
    print(f"saved {save(args.output, data)}")


if __name__ == "__main__":
    main()
