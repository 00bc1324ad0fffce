"""Convergence: a container's /32 appears on host A; how long until it is in host B's kernel FIB?

One reflector and two hosts on one L2 segment, for each daemon:

- routed: routed reflector and hosts (labs/quickstart.clab.yml). The container is added
  through host A's API (`workload.add`, what `routed workload add` and the CNI send).
- bird: BIRD2 on the hosts and as the reflector, set up as Calico runs it: the host's
  kernel protocol learns the /32 the CNI writes (`learn`, `scan time 2` as a fallback:
  BIRD also follows netlink events), exports it with next hop self to the reflector.

Times are taken from netlink: `a_to_b` from the route in A's kernel to the route in B's
(comparable across daemons), and for routed `api_to_b` from the API request, which also
includes creating the veth. Removal is timed the same way.

    python -m bench.convergence --daemons routed bird --trials 50
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import LABS, birdc, daemon_cpu_s, generated_lab, node_exec, reflector_topology, save
from bench.netlink_count import RouteCounter, wait_all
from routed.lab import runner
from routed.lab.topology import Topology, load_topology

DAEMONS = ("routed", "bird")
BIRD_HOST = """\
router id {address};
protocol device {{ scan time 2; }}
protocol direct {{ ipv4; interface "eth*"; }}
protocol kernel {{
    learn;                 # the /32s the CNI writes, as Calico's BIRD does
    scan time 2;
    merge paths on;
    ipv4 {{ import all; export where source = RTS_BGP; }};
}}
filter pool {{ if net ~ [ 10.65.0.0/16{{32,32}} ] then accept; reject; }}
protocol bgp reflector {{
    local {address} as 64512;
    neighbor 10.0.0.1 as 64512;
    hold time 9;
    connect retry time 1;
    ipv4 {{ import all; export filter pool; next hop self; }};
}}
"""
BIRD_RR = """\
router id 10.0.0.1;
protocol device {}
template bgp clients {
    local 10.0.0.1 as 64512;
    rr client;
    hold time 9;
    connect retry time 1;
    ipv4 { import all; export all; };
}
protocol bgp h1 from clients { neighbor 10.0.0.11 as 64512; }
protocol bgp h2 from clients { neighbor 10.0.0.12 as 64512; }
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


BIRD_BFD = """\
protocol bfd {
    interface "eth1" { min rx interval 50 ms; min tx interval 50 ms; multiplier 3; };
}
"""


def _with_bfd(config: str) -> str:
    """BFD on every BGP session (50 ms x 3: a silent peer is down within 150 ms). `direct`:
    BIRD counts iBGP sessions as multihop otherwise, and its multihop BFD never came up here."""
    return BIRD_BFD + config.replace("    hold time 9;\n", "    hold time 9;\n    direct;\n    bfd on;\n")


@contextmanager
def bird_lab(bfd: bool = False) -> Iterator[Topology]:
    topology = reflector_topology("bird", "conf", "/etc/bird/bird.conf")
    files = {
        "rr.conf": BIRD_RR,
        "h1.conf": BIRD_HOST.format(address="10.0.0.11"),
        "h2.conf": BIRD_HOST.format(address="10.0.0.12"),
    }
    if bfd:
        files = {name: _with_bfd(text) for name, text in files.items()}
    with generated_lab(topology, files) as topo:
        deadline = time.monotonic() + 60
        while not all(
            "Established" in birdc(topo, h, "show", "protocols", "reflector") for h in ("h1", "h2")
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("BIRD sessions did not come up")
            time.sleep(0.2)
        # the "container" side: a veth whose host end carries the /32s
        node_exec(topo, "h1", "ip", "link", "add", "cali0", "type", "veth", "peer", "name", "cali1")
        node_exec(topo, "h1", "ip", "link", "set", "cali0", "up")
        node_exec(topo, "h1", "ip", "link", "set", "cali1", "up")
        yield topo


@contextmanager
def routed_lab(family: int = 4) -> Iterator[Topology]:
    """labs/quickstart.clab.yml; for IPv6, labs/dual-stack.clab.yml (its IPv6 sessions carry it)."""
    lab = "quickstart" if family == 4 else "dual-stack"
    topo = load_topology(LABS / f"{lab}.clab.yml", name=f"c{time.monotonic_ns() % 10**6}", prefix="rt")
    runner.up(topo)
    try:
        deadline = time.monotonic() + 60
        while "10.65.1.0/26" not in node_exec(topo, "h2", "ip", "route"):  # h1's block
            if time.monotonic() > deadline:
                raise RuntimeError("the routed lab did not converge")
            time.sleep(0.2)
        yield topo
    finally:
        runner.down(topo)


class UpdateTap:
    """BGP messages longer than a KEEPALIVE seen on the reflector's fabric interface, timestamped
    by the kernel (tcpdump -tt): splits A -> B into A's hop, the reflector's and B's."""

    # TCP payload longer than 19 bytes (a KEEPALIVE): UPDATEs, in practice, once sessions are up
    FILTER = "tcp port 179 and (ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)) > 19"

    def __init__(self, netns: str, interface: str = "eth1") -> None:
        self.seen: list[tuple[float, str, str]] = []
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "tcpdump", "-i", interface, "-tt", "-n", "-l", "-U", self.FILTER],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        time.sleep(0.5)  # tcpdump needs a moment before it captures

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            # 1795635811.750248 IP 10.0.0.11.34903 > 10.0.0.1.179: Flags [P.], ...
            parts = line.split()
            if len(parts) > 4 and parts[1] == "IP":
                src, dst = parts[2].rsplit(".", 1)[0], parts[4].rstrip(":").rsplit(".", 1)[0]
                self.seen.append((float(parts[0]), src, dst))

    def first(self, src: str, dst: str, after: float, deadline: float = 2.0) -> float | None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for stamp, s, d in list(self.seen):
                if stamp >= after and s == src and d == dst:
                    return stamp
            time.sleep(0.01)
        return None

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=5)


def _matcher(ip: str) -> Any:
    address = ipaddress.ip_address(ip)
    packed, length = address.packed, address.max_prefixlen
    return lambda dst, dst_len: dst_len == length and dst == packed


def api_call(topo: Topology, node: str, request: dict[str, Any]) -> dict[str, Any]:
    """Talk to a node's routed API through its mount namespace, as a local client would."""
    holder = runner.holder_pid(topo, node)
    path = f"/proc/{holder}/root/run/routed/routed.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        reply = sock.makefile("rb").readline()
    response: dict[str, Any] = json.loads(reply)
    if not response.get("ok"):
        raise RuntimeError(response)
    return response


def watching(counters: list[RouteCounter], count: int) -> tuple[threading.Thread, list[float | None]]:
    """Start following the namespaces before the change is made, so nothing is read late."""
    reached: list[float | None] = [None] * len(counters)

    def follow() -> None:
        reached[:] = wait_all(counters, count, 30)

    thread = threading.Thread(target=follow)
    thread.start()
    return thread, reached


def hops(tap: UpdateTap, t_a: float, t_b: float, result: dict[str, float]) -> None:
    """The reflector's share (UPDATE in -> UPDATE out on its interface, both stamped by the
    kernel) and the two hosts' together (the rest of A -> B). Splitting the hosts' share further
    would compare netlink listener times with packet times, whose offsets differ by milliseconds."""
    sent = tap.first("10.0.0.11", "10.0.0.1", t_a - 0.05)
    reflected = tap.first("10.0.0.1", "10.0.0.12", t_a - 0.05)
    if sent is not None and reflected is not None and reflected >= sent:
        result["add_reflector_ms"] = (reflected - sent) * 1000
        result["add_hosts_ms"] = (t_b - t_a) * 1000 - result["add_reflector_ms"]


def trial(daemon: str, topo: Topology, index: int, tap: UpdateTap, family: int = 4) -> dict[str, float]:
    # outside h1's block: announced as a host route of its own, the same in both families
    ip = f"10.65.{100 + index // 200}.{1 + index % 200}" if family == 4 else f"fd00:65:0:100::{1 + index:x}"
    a = RouteCounter(topo.node("h1").netns, _matcher(ip))
    b = RouteCounter(topo.node("h2").netns, _matcher(ip))
    result: dict[str, float] = {}
    try:
        if daemon == "routed":
            name = f"c{index}"
            node_exec(topo, "h1", "ip", "netns", "add", name)
        thread, reached = watching([a, b], 1)
        if daemon == "routed":
            t0 = time.time()
            api_call(topo, "h1", {"op": "workload.add", "id": name, "netns": name, "ips": [ip]})
        else:
            t0 = time.time()
            node_exec(
                topo, "h1", "ip", "route", "add", f"{ip}/32", "dev", "cali0", "proto", "boot"
            )  # (IPv4 only)
        thread.join()
        t_a, t_b = reached
        if t_a is None or t_b is None:
            raise RuntimeError(f"trial {index}: route {ip} did not arrive")
        result["add_a_to_b_ms"] = (t_b - t_a) * 1000
        hops(tap, t_a, t_b, result)
        if daemon == "routed":
            result["add_api_to_b_ms"] = (t_b - t0) * 1000
        thread, reached = watching([a, b] if daemon == "bird" else [b], 0)
        t0 = time.time()
        if daemon == "routed":
            api_call(topo, "h1", {"op": "workload.del", "id": f"c{index}"})
        else:
            node_exec(topo, "h1", "ip", "route", "del", f"{ip}/32", "dev", "cali0")
        thread.join()
        t_a, t_b = reached if daemon == "bird" else (None, reached[0])
        if t_b is None:
            raise RuntimeError(f"trial {index}: route {ip} was not withdrawn")
        if daemon == "routed":
            # the kernel drops A's route with the veth and sends no RTM_DELROUTE for it,
            # so removal is timed from the API request
            result["del_api_to_b_ms"] = (t_b - t0) * 1000
            node_exec(topo, "h1", "ip", "netns", "del", f"c{index}")
        else:
            result["del_a_to_b_ms"] = (t_b - (t_a if t_a is not None else t0)) * 1000
    finally:
        a.close()
        b.close()
    return result


def summarize(results: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    summary = {}
    for key in dict.fromkeys(key for r in results for key in r):
        values = [r[key] for r in results if key in r]
        summary[key] = {
            "p50": statistics.median(values),
            "p95": percentile(values, 0.95),
            "max": max(values),
            "n": len(values),
        }
    return summary


IDLE_BASELINE_S = 3.0


def reflector_cpu_ms(netns: str, work: Callable[[], Any], events: int) -> tuple[Any, dict[str, float]]:
    """Run `work` and return its result with the reflector's CPU milliseconds per reflected
    event, per process, less what the same processes spend idle (timers, keepalives): a floor
    under the reflector's share of the latency, whatever the scheduling."""
    before = daemon_cpu_s(netns)
    time.sleep(IDLE_BASELINE_S)
    idle = {k: (v - before.get(k, 0.0)) / IDLE_BASELINE_S for k, v in daemon_cpu_s(netns).items()}
    before, started = daemon_cpu_s(netns), time.monotonic()
    result = work()
    elapsed = time.monotonic() - started
    used = daemon_cpu_s(netns)
    per_event = {
        _process_name(k): round((v - before.get(k, 0.0) - idle.get(k, 0.0) * elapsed) * 1000 / events, 3)
        for k, v in used.items()
    }
    return result, per_event


def _process_name(cmdline: str) -> str:
    if "bgp.exabgp.launch" in cmdline:
        return "exabgp"
    if "routed run" in cmdline:
        return "routed"
    return cmdline.split()[0].rsplit("/", 1)[-1]


def measure(daemon: str, trials: int, family: int = 4) -> dict[str, Any]:
    with routed_lab(family) if daemon == "routed" else bird_lab() as topo:
        reflector = topo.node("rr1" if daemon == "routed" else "rr").netns
        tap = UpdateTap(reflector)  # (IPv4 sessions only: no reflector split for IPv6)
        try:
            # each trial reflects two events: the host route's announcement and its withdrawal
            results, cpu = reflector_cpu_ms(
                reflector, lambda: [trial(daemon, topo, i, tap, family) for i in range(trials)], 2 * trials
            )
        finally:
            tap.close()
    return {
        "daemon": daemon if family == 4 else f"{daemon}6",
        "summary": summarize(results),
        "reflector_cpu_ms_per_event": cpu,
        "trials": results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--daemons", nargs="+", default=list(DAEMONS), choices=DAEMONS)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument(
        "--family", type=int, choices=(4, 6), default=4, help="6: a /128 across labs/dual-stack (routed only)"
    )
    args = parser.parse_args()
    if args.family == 6 and args.daemons != ["routed"]:
        parser.error("--family 6 measures routed alone: give --daemons routed")
    measured = [measure(d, args.trials, args.family) for d in args.daemons]
    print(f"{'daemon':<8}{'metric':<18}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for m in measured:
        for key, s in m["summary"].items():
            print(f"{m['daemon']:<8}{key:<18}{s['p50']:>9.2f}{s['p95']:>9.2f}{s['max']:>9.2f}")
    for m in measured:
        cpu = ", ".join(f"{name} {ms:.2f} ms" for name, ms in m["reflector_cpu_ms_per_event"].items())
        print(f"{m['daemon']}: the reflector's CPU per reflected event (idle subtracted): {cpu}")
    print(f"results: {save('convergence' if args.family == 4 else 'convergence6', {'results': measured})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
