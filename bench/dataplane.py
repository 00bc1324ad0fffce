"""Data plane: TCP throughput and ping latency between containers on two hosts.

Three ways to carry the same packets between the same namespaces:
- routed:  routed on both hosts (iBGP), container /32s routed natively;
- plain:   the same veths and /32 routes written by hand, no daemon at all;
- vxlan:   the containers' traffic through a VXLAN overlay between the hosts (MTU 1450).

With `--family 6` the containers talk IPv6 (/128s) over the hosts' IPv6 fabric addresses,
routed (a dual-stack fabric, an IPv6 session) against plain IPv6 routing.

    python -m bench.dataplane --seconds 10
    python -m bench.dataplane --family 6 --modes routed plain
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import generated_lab, node_exec, save
from routed.lab import runner
from routed.lab.topology import Topology

MODES = ("routed", "plain", "vxlan")
HOST_CONFIG = """\
name: {name}
router_id: {address}
asn: 64512
fabric: {{interface: eth1, address: {address}, address6: "{address6}"}}
pools: [10.65.0.0/16, "fd00:65::/48"]
peers:
  - {{address: {peer}, kind: mesh}}
  - {{address: "{peer6}", kind: mesh}}
"""
# each family's addresses: the hosts' fabric, and the container on each host
FABRIC = {4: ("10.0.0.1", "10.0.0.2"), 6: ("fd00::1", "fd00::2")}
CONTAINER = {4: ("10.65.1.1", "10.65.2.1"), 6: ("fd00:65:0:1::1", "fd00:65:0:2::1")}


@contextmanager
def hosts(mode: str, family: int = 4) -> Iterator[Topology]:
    daemon = "routed" if mode == "routed" else "none"
    setup = (
        "[ip addr add 10.0.0.{n}/24 dev eth1, ip -6 addr add fd00::{n}/64 dev eth1 nodad, ip netns add c, "
        "sysctl -qw net.ipv4.ip_forward=1, sysctl -qw net.ipv6.conf.all.forwarding=1]"
    )
    topology = textwrap.dedent(f"""\
        name: dp
        topology:
          nodes:
            h1:
              kind: linux
              binds: ["h1.yaml:/etc/routed/routed.yaml:ro"]
              env: {{NODE_DAEMON: {daemon}}}
              exec: {setup.format(n=1)}
            h2:
              kind: linux
              binds: ["h2.yaml:/etc/routed/routed.yaml:ro"]
              env: {{NODE_DAEMON: {daemon}}}
              exec: {setup.format(n=2)}
          links:
            - endpoints: ["h1:eth1", "h2:eth1"]
        """)
    files = {
        "h1.yaml": HOST_CONFIG.format(
            name="h1", address="10.0.0.1", address6="fd00::1", peer="10.0.0.2", peer6="fd00::2"
        ),
        "h2.yaml": HOST_CONFIG.format(
            name="h2", address="10.0.0.2", address6="fd00::2", peer="10.0.0.1", peer6="fd00::1"
        ),
    }
    (one, two), (fab1, fab2) = CONTAINER[family], FABRIC[family]
    with generated_lab(topology, files) as topo:
        # the same workload plumbing in every mode (routed's, through the API or directly)
        node_exec(topo, "h1", "routed", "workload", "add", "c", "--netns", "c", "--ip", one)
        node_exec(topo, "h2", "routed", "workload", "add", "c", "--netns", "c", "--ip", two)
        if mode == "plain":
            node_exec(topo, "h1", "ip", "route", "add", two, "via", fab2)
            node_exec(topo, "h2", "ip", "route", "add", one, "via", fab1)
        elif mode == "vxlan":
            for node, local, remote, mine, other in (
                ("h1", "10.0.0.1", "10.0.0.2", "1", "2"),
                ("h2", "10.0.0.2", "10.0.0.1", "2", "1"),
            ):
                node_exec(
                    topo,
                    node,
                    "ip",
                    "link",
                    "add",
                    "vxlan0",
                    "type",
                    "vxlan",
                    "id",
                    "42",
                    "local",
                    local,
                    "remote",
                    remote,
                    "dstport",
                    "4789",
                )
                node_exec(topo, node, "ip", "addr", "add", f"172.16.0.{mine}/24", "dev", "vxlan0")
                node_exec(topo, node, "ip", "link", "set", "vxlan0", "up")
                node_exec(topo, node, "ip", "route", "add", f"10.65.{other}.1/32", "via", f"172.16.0.{other}")
                node_exec(topo, node, "ip", "netns", "exec", "c", "ip", "link", "set", "eth0", "mtu", "1450")
        deadline = time.monotonic() + 60
        while " 0% packet loss" not in node_exec(
            topo, "h1", "ip", "netns", "exec", "c", "ping", "-c1", "-W1", two, check=False
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode}: containers cannot reach each other")
        yield topo


def cpu_busy_s() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / 100.0


def measure(mode: str, seconds: int, family: int = 4) -> dict[str, Any]:
    target = CONTAINER[family][1]
    with hosts(mode, family) as topo:
        server = subprocess.Popen(
            [
                "nsenter",
                "--target",
                str(runner.holder_pid(topo, "h2")),
                "--mount",
                "--net",
                "--",
                "ip",
                "netns",
                "exec",
                "c",
                "iperf3",
                "-s",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while ":5201" not in node_exec(
                topo, "h2", "ip", "netns", "exec", "c", "ss", "-Hltn", check=False
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("iperf3 server did not start")
                time.sleep(0.05)
            for _attempt in range(3):
                busy = cpu_busy_s()
                out = node_exec(
                    topo,
                    "h1",
                    "ip",
                    "netns",
                    "exec",
                    "c",
                    "iperf3",
                    "-c",
                    target,
                    "-t",
                    str(seconds),
                    "-J",
                    check=False,
                )
                busy = cpu_busy_s() - busy
                report = json.loads(out)
                if "sum_received" in report.get("end", {}):
                    break
                time.sleep(0.5)  # iperf3 refuses a test now and then while the last one winds down
            else:
                raise RuntimeError(f"{mode}: iperf3 failed three times: {report.get('error')}")
        finally:
            server.terminate()
            server.wait(timeout=30)
        bps = report["end"]["sum_received"]["bits_per_second"]
        gbits = report["end"]["sum_received"]["bytes"] * 8 / 1e9
        ping = node_exec(
            topo, "h1", "ip", "netns", "exec", "c", "ping", "-q", "-c", "200", "-i", "0.005", target
        )
        rtt_avg = float(ping.rsplit("=", 1)[1].split("/")[1])
        return {"mode": mode, "gbit_s": bps / 1e9, "rtt_avg_ms": rtt_avg, "cpu_s_per_gbit": busy / gbits}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="rounds over all modes; the median is reported")
    parser.add_argument("--family", type=int, choices=(4, 6), default=4, help="the containers' IP version")
    args = parser.parse_args()
    if args.family == 6 and "vxlan" in args.modes:
        parser.error("--family 6 compares routed with plain IPv6 routing: give --modes routed plain")
    rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
    for _ in range(args.repeat):  # interleaved, so drift on the machine hits every mode alike
        for mode in args.modes:
            rounds[mode].append(measure(mode, args.seconds, args.family))
    results = []
    for mode, runs in rounds.items():
        median = {
            key: statistics.median(r[key] for r in runs) for key in ("gbit_s", "rtt_avg_ms", "cpu_s_per_gbit")
        }
        result: dict[str, Any] = {"mode": mode, **median, "runs": [r["gbit_s"] for r in runs]}
        if "plain" in rounds:
            # each round's modes ran minutes apart at most: their ratio shrugs off slower drift
            per_round = [r["gbit_s"] / p["gbit_s"] for r, p in zip(runs, rounds["plain"], strict=True)]
            result["ratio_per_round"] = per_round
            result["ratio_median"] = statistics.median(per_round)
        results.append(result)
    base = next((r["gbit_s"] for r in results if r["mode"] == "plain"), None)
    print(f"{'mode':<8}{'Gbit/s':>9}{'vs plain':>10}{'per round':>11}{'rtt ms':>9}{'CPU s/Gbit':>12}")
    for r in results:
        ratio = f"{r['gbit_s'] / base:.3f}" if base else "-"
        round_ratio = f"{r['ratio_median']:.3f}" if "ratio_median" in r else "-"
        print(
            f"{r['mode']:<8}{r['gbit_s']:>9.2f}{ratio:>10}{round_ratio:>11}"
            f"{r['rtt_avg_ms']:>9.3f}{r['cpu_s_per_gbit']:>12.3f}"
        )
    print(f"results: {save('dataplane' if args.family == 4 else 'dataplane6', {'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
