"""Convergence: `routed workload add` on node A until the /32 is in node B's kernel FIB.

Builds the lab from labs/<lab>.clab.yml, runs the command in A as a user would
(`routed workload add`, through nsenter, so the CLI's own start-up is included),
and watches B's routing table through netlink events for the exact moment the
route lands. Also reports the daemon's share: from A's daemon logging the
workload to B's kernel having the route.

    python -m bench.convergence --lab mesh --src h1 --dst h2 --trials 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE

from routed.dataplane.netns import async_iproute
from routed.lab import runner
from routed.lab.topology import load_topology

LABS = Path(__file__).resolve().parents[1] / "labs"
ROUTED = Path(sys.executable).parent / "routed"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def wait_route(netns: str, prefix: str, present: bool, timeout: float = 30) -> float:
    """Monotonic time at which `prefix` appears (or vanishes) in `netns`'s main table."""
    listener = async_iproute(netns, groups=RTMGRP_IPV4_ROUTE)
    await listener.bind(groups=RTMGRP_IPV4_ROUTE)
    try:
        async with asyncio.timeout(timeout):
            while True:
                async for msg in listener.get():
                    dst = msg.get("dst")
                    matches = dst and f"{dst}/{msg['dst_len']}" == prefix
                    if matches and (msg["event"] == "RTM_NEWROUTE") == present:
                        return time.monotonic()
    finally:
        listener.close()


def node_log_time(log: str, workload: str) -> float | None:
    match = re.search(
        rf"ts=(\S+)Z level=info logger=routed.workloads event=workload_(added|deleted) workload={workload} ",
        log,
    )
    if not match:
        return None
    return datetime.fromisoformat(match.group(1) + "+00:00").timestamp()


async def trial(topo: Any, src: str, dst: str, index: int, remove: bool) -> dict[str, float]:
    holder = runner._holder(topo, src)
    name = f"bench{index}"
    ip = f"10.65.{200 + index // 250}.{1 + index % 250}"
    prefix = f"{ip}/32"
    dst_netns = topo.node(dst).netns
    enter = ["nsenter", "--target", str(holder), "--mount", "--net", "--"]
    subprocess.run([*enter, "ip", "netns", "add", name], check=True)
    watcher = asyncio.create_task(wait_route(dst_netns, prefix, present=True))
    await asyncio.sleep(0.05)  # listener bound
    wall0, t0 = time.time(), time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *enter, str(ROUTED), "workload", "add", name, "--netns", name, "--ip", ip, stdout=subprocess.DEVNULL
    )
    t1 = await watcher
    await proc.wait()
    log = (runner.state_dir(topo) / "logs" / f"{src}.log").read_text()
    logged = node_log_time(log, name)
    result = {"add_ms": (t1 - t0) * 1000}
    if logged is not None:
        result["add_daemon_ms"] = (t1 - t0 - (logged - wall0)) * 1000
    if remove:
        watcher = asyncio.create_task(wait_route(dst_netns, prefix, present=False))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *enter, str(ROUTED), "workload", "del", name, stdout=subprocess.DEVNULL
        )
        t1 = await watcher
        await proc.wait()
        result["del_ms"] = (t1 - t0) * 1000
    subprocess.run([*enter, "ip", "netns", "del", name], check=False)
    return result


def summarize(results: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    summary = {}
    for key in results[0]:
        values = [r[key] for r in results if key in r]
        summary[key] = {
            "p50": statistics.median(values),
            "p95": percentile(values, 0.95),
            "max": max(values),
            "n": len(values),
        }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", default="mesh")
    parser.add_argument("--src", default="h1")
    parser.add_argument("--dst", default="h2")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--remove", action="store_true", help="also time the withdraw")
    parser.add_argument("--json", type=Path, help="write results here")
    args = parser.parse_args()
    topo = load_topology(LABS / f"{args.lab}.clab.yml", name=f"bench{uuid.uuid4().hex[:6]}", prefix="rt")
    runner.up(topo)
    try:
        deadline = time.monotonic() + 60
        while (
            "10.65.1.1"
            not in subprocess.run(
                ["ip", "-n", topo.node(args.dst).netns, "route"], capture_output=True, text=True
            ).stdout
        ):
            if time.monotonic() > deadline:
                raise SystemExit("the lab did not converge within 60 s")
            time.sleep(0.2)
        results = [asyncio.run(trial(topo, args.src, args.dst, i, args.remove)) for i in range(args.trials)]
    finally:
        runner.down(topo)
    summary = summarize(results)
    print(f"{args.lab}: {args.src} -> {args.dst}, {args.trials} trials")
    print(f"{'metric':<16}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for key, s in summary.items():
        print(f"{key:<16}{s['p50']:>10.1f}{s['p95']:>10.1f}{s['max']:>10.1f}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "trials": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
