"""A generated lab of real routed hosts on one machine (issue 30, item 6).

`routed lab generate --hosts N --reflectors R --workloads W` as a user writes it, brought up with
`routed lab up`'s runner; then, in order:

1. start: until `up` returns (every node's namespace, links and daemon started);
2. convergence: until every host's kernel holds exactly the truth (bench.truth: its own
   workloads and block, every other host's block via that host);
3. idle: RSS and CPU of every node's processes over `--idle` seconds, hosts and reflectors;
4. a new container on h1: until every host reaches it (one ping each, from the host);
5. a reflector restart (rr1: SIGTERM, started again) under ping streams between workloads of
   sampled host pairs, `RATE` a second, every packet counted; until rr1 has all its clients;
6. a mass restart: every host's daemon stopped (SIGTERM, graceful restart) and started again,
   all at once, under the same streams; until every host holds the truth again.

Beside each event's lost pings stands the kernel's count of packets it dropped because a
CPU's input backlog was full (/proc/net/softnet_stat, the whole machine): every node's
traffic crosses one bridge on two cores here, which real hosts do not. `--backlog` raises
net.core.netdev_max_backlog for the run (and puts it back) to tell the two causes apart.

    python -m bench.labscale --hosts 200 --reflectors 2 --workloads 1
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from bench import truth
from bench.common import daemon_cpu_s, node_exec, pid_in_node, save, write_generated
from bench.footprint import process_memory
from bench.restarts import kill
from routed.lab import runner
from routed.lab.generate import LabPlan
from routed.lab.topology import Topology

RATE = 20  # pings a second per stream
STREAMS = 10  # sampled host pairs, workload to workload
SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")
POOL = 16  # nodes asked at once


def parallel(nodes: list[str], work: Callable[[str], Any]) -> dict[str, Any]:
    with ThreadPoolExecutor(POOL) as pool:
        return dict(zip(nodes, pool.map(work, nodes), strict=True))


def wait_for(what: str, condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until condition() holds; raises after timeout."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(1)
    return time.monotonic() - started


class Lab:
    def __init__(self, topo: Topology, hosts: list[str], reflectors: list[str]) -> None:
        self.topo, self.hosts, self.reflectors = topo, hosts, reflectors
        self.owned = parallel(hosts, lambda node: truth.holdings(topo, node))
        self.last_differences = 0

    def matches_truth(self) -> bool:
        report = truth.check(self.topo, self.owned)
        self.last_differences = len(report.differences)
        return not report.differences

    def peers_up(self, node: str, expected: int) -> bool:
        """The node's sessions up, from its /metrics (curl: no Python start per node and poll)."""
        result = runner.run_in_node(
            self.topo, node, ["curl", "-sf", "http://127.0.0.1:9180/metrics"], capture=True
        )
        up = sum(
            line.startswith("routed_bgp_session_up{") and line.endswith(" 1.0")
            for line in result.stdout.splitlines()
        )
        return up >= expected

    def all_hosts_up(self) -> bool:
        return all(parallel(self.hosts, lambda node: self.peers_up(node, len(self.reflectors))).values())

    def resources(self, idle: float) -> dict[str, Any]:
        nodes = self.reflectors + self.hosts
        before = parallel(nodes, lambda node: daemon_cpu_s(self.topo.node(node).netns))
        time.sleep(idle)
        after = parallel(nodes, lambda node: daemon_cpu_s(self.topo.node(node).netns))
        memory = parallel(nodes, lambda node: process_memory(self.topo.node(node).netns))
        per_node = {
            node: {
                "rss_mb": sum(p["rss_kb"] for p in memory[node]) / 1024,
                "cpu_pct": 100 * sum(after[node].get(k, 0) - v for k, v in before[node].items()) / idle,
            }
            for node in nodes
        }
        hosts = [per_node[h] for h in self.hosts]
        return {
            "reflectors": {r: per_node[r] for r in self.reflectors},
            "host_rss_mb": summary([h["rss_mb"] for h in hosts]),
            "host_cpu_pct": summary([h["cpu_pct"] for h in hosts]),
            "all_nodes_rss_gb": sum(n["rss_mb"] for n in per_node.values()) / 1024,
            "all_nodes_cpu_pct": sum(n["cpu_pct"] for n in per_node.values()),
        }

    def new_container(self, timeout: float) -> dict[str, Any]:
        block = sorted(self.owned["h1"].blocks)[0]
        address = str(list(ip_network(block).hosts())[-1])  # the block's last: no workload has it yet
        node_exec(self.topo, "h1", "ip", "netns", "add", "wnew")
        started = time.monotonic()
        node_exec(self.topo, "h1", "routed", "workload", "add", "h1-new", "--netns", "wnew", "--ip", address)
        pending = [h for h in self.hosts if h != "h1"]
        reached: dict[str, float] = {}
        while pending and time.monotonic() - started < timeout:
            ok = parallel(pending, lambda node: self.ping_once(node, address))
            now = time.monotonic() - started
            reached.update({node: now for node, good in ok.items() if good})
            pending = [node for node, good in ok.items() if not good]
        self.owned["h1"] = truth.holdings(self.topo, "h1")  # the truth now has the new container
        return {
            "address": address,
            "hosts_reaching": len(reached),
            "hosts": len(self.hosts) - 1,
            "all_reach_s": max(reached.values()) if reached and not pending else None,
            "unreached": pending[:10],
        }

    def ping_once(self, node: str, address: str) -> bool:
        result = runner.run_in_node(self.topo, node, ["ping", "-c1", "-W1", address], capture=True)
        return result.returncode == 0

    def under_streams(self, seconds: float, event: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Ping streams between workloads of sampled host pairs, `event` run 3 s in, all counted."""
        step = max(1, len(self.hosts) // STREAMS)
        pairs = [
            (self.hosts[i], self.hosts[(i + len(self.hosts) // 2) % len(self.hosts)])
            for i in range(0, len(self.hosts), step)
        ][:STREAMS]
        count = int(seconds * RATE)
        outputs: dict[str, str] = {}

        def stream(source: str, target: str) -> None:
            dst = sorted(self.owned[target].workloads)[0]
            argv = [
                "ip",
                "netns",
                "exec",
                "w1",
                "ping",
                "-q",
                "-i",
                str(1 / RATE),
                "-c",
                str(count),
                "-W",
                "1",
                dst,
            ]
            try:
                # no timeout of ours: a loaded machine sends late, and ping ends by its count
                result = runner.run_in_node(self.topo, source, argv, capture=True, timeout=None)
                outputs[f"{source}->{target}"] = result.stdout
            except Exception as exc:  # shown below: a stream that did not run is not "no loss"
                outputs[f"{source}->{target}"] = f"stream failed: {exc!r}"

        threads = [threading.Thread(target=stream, args=pair) for pair in pairs]
        drops_before = backlog_drops()
        for thread in threads:
            thread.start()
        time.sleep(3)
        began = time.monotonic()
        result = event()
        result["streams_outlasted_event"] = time.monotonic() - began + 3 < seconds
        for thread in threads:
            thread.join()
        result["backlog_drops"] = backlog_drops() - drops_before
        if len(outputs) != len(pairs):
            raise RuntimeError(f"{len(pairs) - len(outputs)} ping streams gave no result")
        lost = {}
        for label, output in outputs.items():
            match = SUMMARY.search(output)
            if not match:
                raise RuntimeError(f"{label}: no ping summary: {output!r}")
            lost[label] = int(match.group(1)) - int(match.group(2))
        return {**result, "sent": count * len(pairs), "lost": sum(lost.values()), "streams": lost}

    def restart_reflector(self, timeout: float) -> dict[str, Any]:
        pid = pid_in_node(self.topo, "rr1", "routed run")
        assert pid is not None, "no routed daemon in rr1"
        started = time.monotonic()
        kill(pid, signal.SIGTERM, 60)
        runner.start(self.topo, "rr1")
        stopped = time.monotonic() - started
        wait_for("rr1's clients back", lambda: self.peers_up("rr1", len(self.hosts)), timeout)
        return {"stopped_s": round(stopped, 2), "all_clients_up_s": round(time.monotonic() - started, 2)}

    def mass_restart(self, timeout: float) -> dict[str, Any]:
        started = time.monotonic()
        pids = parallel(self.hosts, lambda node: pid_in_node(self.topo, node, "routed run"))
        parallel(self.hosts, lambda node: kill(pids[node], signal.SIGTERM, 60) if pids[node] else None)
        stopped = time.monotonic() - started
        for node in self.hosts:  # one at a time: each start records the lab's state file
            runner.start(self.topo, node)
        back = time.monotonic() - started
        sessions_s = wait_for("every host's sessions up again", self.all_hosts_up, timeout)
        truth_s = wait_for("every host back to the truth", self.matches_truth, timeout)
        return {
            "all_stopped_s": round(stopped, 2),
            "all_started_s": round(back, 2),
            "all_sessions_up_s": round(back + sessions_s, 2),
            "truth_after_sessions_s": round(truth_s, 2),
        }


def backlog_drops() -> int:
    """Packets the kernel dropped because a CPU's input backlog was full (netdev_max_backlog),
    on the whole machine: with every node of the lab on two cores, a burst of BGP traffic
    through the one bridge can fill it, and pings are lost there, not to routing."""
    lines = Path("/proc/net/softnet_stat").read_text().splitlines()
    return sum(int(line.split()[1], 16) for line in lines)


@contextmanager
def backlog(packets: int | None) -> Iterator[None]:
    """net.core.netdev_max_backlog set for the run (machine-wide) and put back after it."""
    knob = Path("/proc/sys/net/core/netdev_max_backlog")
    before = knob.read_text().strip()
    if packets is not None:
        knob.write_text(str(packets))
    try:
        yield
    finally:
        knob.write_text(before)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "mean": round(statistics.fmean(ordered), 2),
        "p50": round(ordered[len(ordered) // 2], 2),
        "max": round(ordered[-1], 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = LabPlan(name="scale", hosts=args.hosts, reflectors=args.reflectors, workloads=args.workloads)
    results: dict[str, Any] = {
        "hosts": args.hosts,
        "reflectors": args.reflectors,
        "workloads": args.workloads,
    }
    with tempfile.TemporaryDirectory(prefix="routed-labscale-") as tmp:
        topo = write_generated(plan, Path(tmp), f"s{uuid.uuid4().hex[:5]}")
        started = time.monotonic()
        try:
            runner.up(topo)
            results["up_s"] = round(time.monotonic() - started, 1)
            print(f"up in {results['up_s']} s", flush=True)
            lab = Lab(
                topo,
                [f"h{i}" for i in range(1, args.hosts + 1)],
                [f"rr{i}" for i in range(1, args.reflectors + 1)],
            )
            results["truth_s_after_up"] = round(wait_for("convergence", lab.matches_truth, args.timeout), 1)
            results["routes_checked"] = truth.check(topo, lab.owned).routes_checked
            print(f"truth after {results['truth_s_after_up']} s", flush=True)
            results["idle"] = lab.resources(args.idle)
            print(f"idle: {results['idle']}", flush=True)
            results["new_container"] = lab.new_container(args.timeout)
            print(f"new container: {results['new_container']}", flush=True)
            results["reflector_restart"] = lab.under_streams(
                args.reflector_seconds, lambda: lab.restart_reflector(args.timeout)
            )
            print(f"reflector restart: {results['reflector_restart']}", flush=True)
            results["mass_restart"] = lab.under_streams(
                args.mass_seconds, lambda: lab.mass_restart(args.timeout)
            )
            print(f"mass restart: {results['mass_restart']}", flush=True)
        finally:
            down_started = time.monotonic()
            runner.down(topo)
            results["down_s"] = round(time.monotonic() - down_started, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--reflectors", type=int, default=2)
    parser.add_argument("--workloads", type=int, default=1)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument(
        "--reflector-seconds", type=float, default=90.0, help="ping streams' length, reflector restart"
    )
    parser.add_argument(
        "--mass-seconds", type=float, default=400.0, help="ping streams' length, mass restart"
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--backlog", type=int, help="net.core.netdev_max_backlog for the run (machine-wide, restored after)"
    )
    parser.add_argument("--output", default="labscale")
    args = parser.parse_args()
    # a stopped run still takes its lab down (run's finally): SIGTERM becomes SystemExit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = run(args)
    print(json.dumps(results, indent=1))
    print(f"saved {save(args.output, results)}")


if __name__ == "__main__":
    main()
