"""A route reflector's cost against its number of clients: routed, BIRD2, GoBGP and FRR.

One reflector node (`rr`, 10.0.0.1) and one clients' namespace (`cl`) in which bench.bgpsim
runs N iBGP clients from N addresses (10.1.0.1 up), each announcing its host's /26 block
(and `--host-routes` /32s inside it). The reflector is configured alike for each daemon
(bench/rrconfigs.py). For each size N it measures:

- established_s: from the first connect until every session is Established;
- full_table_s: until every client holds every other client's routes; end_of_rib_s: until
  every client has the reflector's End-of-RIB as well;
- change_last_ms: a new block announced by one client until the last of the others has it,
  p50/p99 over `--trials` (change_median_ms: until half of them have it);
- rss_mb (after the full table), cpu_converge_s (reflector CPU to distribute it),
  cpu_idle_pct (keepalives only, over `--idle` seconds from 1 s after the last End-of-RIB),
  cpu_per_change_ms;
- restart (with --restart): the reflector restarted the way its users restart it with
  graceful restart, until every client has its End-of-RIB; routes withdrawn or swept (0 is
  the target); sim_cpu_s is the clients' own CPU, so a client-bound figure shows as one.

    python -m bench.rrscale --reflectors routed bird gobgp frr --sizes 100 500 1000 --restart
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from bench import rrconfigs
from bench.bgpsim import Client, Simulator, announce, withdraw
from bench.common import birdc, generated_lab, node_exec, processes, save
from bench.convergence import percentile
from bench.restarts import kill, wait_gone
from routed.lab import runner
from routed.lab.topology import Topology

REFLECTORS = tuple(rrconfigs.CONFIGS)
CLIENT_BASE = int(IPv4Address("10.1.0.1"))
BLOCK_BASE = int(IPv4Address("10.64.0.0"))
TRIAL_BASE = int(IPv4Address("10.120.0.0"))
# how each daemon is restarted with graceful restart, as its users do it
RESTART_START = {
    "bird": ["bird", "-c", "/etc/bird/bird.conf", "-s", "/run/bird/bird.ctl", "-R"],
    "gobgp": ["sh", "-c", "setsid -f gobgpd -f /etc/gobgp/gobgpd.toml -t toml -l warn -r >/dev/null 2>&1"],
    # FRR 8.4's bgpd has no -K (FRR 9's "this start is a graceful restart")
    "frr": ["/usr/lib/frr/bgpd", "-d", "-u", "frr", "-g", "frr", "-f", "/etc/frr/frr.conf"],
}


def client_address(index: int) -> IPv4Address:
    return IPv4Address(CLIENT_BASE + index)


def client_routes(index: int, host_routes: int) -> list[IPv4Network]:
    block = IPv4Network((BLOCK_BASE + 64 * index, 26))
    return [block] + [IPv4Network((BLOCK_BASE + 64 * index + 1 + k, 32)) for k in range(host_routes)]


def topology(reflector: str, files: dict[str, tuple[str, str]]) -> str:
    binds = ", ".join(f'"{name}:{target}:ro"' for name, (_, target) in files.items())
    return textwrap.dedent(f"""\
        name: rrscale
        topology:
          nodes:
            rr:
              kind: linux
              binds: [{binds}]
              env: {{NODE_DAEMON: {reflector}}}
              exec: [ip addr add {rrconfigs.REFLECTOR}/24 dev eth1,
                     ip route add {rrconfigs.CLIENT_NET} via {rrconfigs.GATEWAY}]
            cl:
              kind: linux
              env: {{NODE_DAEMON: none}}
              exec: [ip addr add {rrconfigs.GATEWAY}/24 dev eth1, sysctl -qw net.core.somaxconn=4096]
          links:
            - endpoints: ["rr:eth1", "cl:eth1"]
        """)


@contextmanager
def reflector_lab(reflector: str, size: int) -> Iterator[Topology]:
    clients = [client_address(i) for i in range(size)]
    files = rrconfigs.CONFIGS[reflector](clients)
    with generated_lab(topology(reflector, files), {n: text for n, (text, _) in files.items()}) as topo:
        batch = "".join(f"address add {a}/32 dev lo\n" for a in clients)
        subprocess.run(["ip", "-n", topo.node("cl").netns, "-batch", "-"], input=batch, text=True, check=True)
        wait_listening(topo)
        yield topo


def wait_listening(topo: Topology, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not node_exec(topo, "rr", "ss", "-Hltn", "sport = :179", check=False).strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the reflector does not listen on port 179 after {timeout:.0f} s")
        time.sleep(0.2)


class Reflector:
    """The reflector's processes in its node: CPU seconds and resident memory."""

    def __init__(self, topo: Topology, daemon: str) -> None:
        self.netns = topo.node("rr").netns
        self.needles = rrconfigs.PROCESSES[daemon]

    def _pids(self) -> list[tuple[int, str]]:
        found = []
        for pid in processes(self.netns):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if any(needle in cmdline for needle in self.needles) and not cmdline.startswith(
                ("sh ", "nsenter")
            ):
                found.append((pid, cmdline))
        return found

    def cpu_s(self) -> float:
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self) -> dict[str, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        used: dict[str, float] = {}
        for pid, cmdline in self._pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            name = next(needle for needle in self.needles if needle in cmdline).strip()
            used[name] = used.get(name, 0.0) + (int(stat[11]) + int(stat[12])) / ticks
        return used

    def rss_mb(self) -> float:
        total = 0
        for pid, _ in self._pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += next(
                (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
            )
        return total / 1024

    def main_pid(self) -> int:
        """The BGP daemon's own process (the first needle's: bgpd, not FRR's zebra)."""
        pids = [pid for pid, cmdline in self._pids() if self.needles[0] in cmdline]
        if not pids:
            raise RuntimeError(f"no reflector process ({self.needles[0]}) in {self.netns}")
        return pids[0]


def profile(rr: Reflector, py_spy: str, label: str) -> list[subprocess.Popen[bytes]]:
    """py-spy recording each of the reflector's Python processes (folded stacks, one line a
    stack and its samples: bench-profiles/rrscale-LABEL-PROCESS-PID.txt)."""
    started = []
    for pid, cmdline in rr._pids():
        name = next(needle for needle in rr.needles if needle in cmdline).strip().replace(" ", "_")
        out = Path("bench-profiles") / f"rrscale-{label}-{name}-{pid}.txt"
        out.parent.mkdir(exist_ok=True)
        command = [py_spy, "record", "--format", "raw", "--rate", "200", "-o", str(out), "-p", str(pid)]
        started.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return started


def stop_profiles(profilers: list[subprocess.Popen[bytes]]) -> None:
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
        profiler.wait(timeout=60)


def restart(topo: Topology, daemon: str, rr: Reflector) -> None:
    """Stop the reflector the way a planned restart stops it, then start it again."""
    pid = rr.main_pid()
    if daemon == "bird":
        birdc(topo, "rr", "graceful", "restart")
        wait_gone(pid, 60)
    else:
        kill(pid, signal.SIGTERM if daemon == "routed" else signal.SIGKILL, 60)
    if daemon == "routed":
        runner.start(topo, "rr")
        return
    # a SIGKILLed multi-threaded daemon (FRR's bgpd) reads as a zombie while its other threads
    # still close their sockets and its pid file stays locked: try again until it starts
    deadline = time.monotonic() + 60
    while True:
        result = runner.run_in_node(topo, "rr", RESTART_START[daemon], capture=True)
        if result.returncode == 0:
            # gobgpd starts detached and exits if port 179 is still held: see it stay up
            time.sleep(2)
            with contextlib.suppress(RuntimeError):
                rr.main_pid()
                return
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    raise RuntimeError(f"{daemon} did not start again: {result.stderr or result.stdout or 'it exited'}")


class Arrivals:
    """When each client saw one prefix come (or go), for a propagation trial."""

    def __init__(self, prefix: bytes, announced: bool, expected: int) -> None:
        self.prefix, self.announced, self.expected = prefix, announced, expected
        self.times: list[float] = []

    def __call__(self, client: Client, prefix: bytes, announced: bool) -> None:
        if prefix == self.prefix and announced == self.announced:
            self.times.append(time.monotonic())

    def done(self) -> bool:
        return len(self.times) >= self.expected


async def scenario(topo: Topology, daemon: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    rr = Reflector(topo, daemon)
    sim = Simulator(
        rrconfigs.REFLECTOR,
        [client_address(i) for i in range(size)],
        lambda i: client_routes(i, args.host_routes),
        hold=rrconfigs.HOLD,
        restart_time=rrconfigs.RESTART_TIME,
        spread_keepalives=args.spread_keepalives,
    )
    expected = (size - 1) * (1 + args.host_routes)
    timeout = args.timeout
    result: dict[str, Any] = {
        "reflector": daemon,
        "clients": size,
        "host_routes": args.host_routes,
        "keepalives": "spread" if args.spread_keepalives else "together",
    }
    sim_cpu, cpu = time.process_time(), rr.cpu_s()
    await sim.start()
    try:
        result["established_s"] = await sim.wait(lambda: sim.up == size, timeout, "every session Established")
        result["full_table_s"] = result["established_s"] + await sim.wait(
            lambda: sim.full_tables(expected), timeout, f"every client holding {expected} routes"
        )
        # idle means keepalives only: the reflector's End-of-RIBs (and whatever it sends after
        # the last route) are the tail of its convergence, not its idle cost
        result["end_of_rib_s"] = result["full_table_s"] + await sim.wait(
            lambda: all(c.end_of_rib_at is not None for c in sim.clients), timeout, "every End-of-RIB"
        )
        result["cpu_converge_s"] = rr.cpu_s() - cpu
        result["sim_cpu_converge_s"] = time.process_time() - sim_cpu
        await asyncio.sleep(1)
        result["rss_mb"] = round(rr.rss_mb(), 1)

        cpu, by_process = rr.cpu_s(), rr.cpu_by_process()
        profilers = profile(rr, args.profile, f"{daemon}-{size}-idle") if args.profile else []
        await asyncio.sleep(args.idle)
        stop_profiles(profilers)
        result["cpu_idle_pct"] = round(100 * (rr.cpu_s() - cpu) / args.idle, 2)
        result["cpu_idle_pct_by_process"] = {
            name: round(100 * (used - by_process.get(name, 0.0)) / args.idle, 2)
            for name, used in rr.cpu_by_process().items()
        }

        last, median, cpu = [], [], rr.cpu_s()
        profiling = args.profile and args.trials  # nothing to record; a py-spy stopped as it starts hung
        profilers = profile(rr, args.profile, f"{daemon}-{size}-changes") if profiling else []
        for trial in range(args.trials):
            origin = random.Random(trial).randrange(size)
            prefix = IPv4Network((TRIAL_BASE + 64 * trial, 26))
            wire = bytes([26]) + prefix.network_address.packed
            for announced in (True, False):
                arrivals = Arrivals(wire, announced, size - 1)
                sim.watch = arrivals
                started = time.monotonic()
                client = sim.clients[origin]
                client.send(announce([prefix], client.address) if announced else withdraw([prefix]))
                await sim.wait(arrivals.done, timeout, f"trial {trial}: {prefix} at every client")
                if announced:
                    last.append((max(arrivals.times) - started) * 1000)
                    median.append((statistics.median(arrivals.times) - started) * 1000)
            sim.watch = None
            await asyncio.sleep(0.05)
        stop_profiles(profilers)
        if args.trials:
            result["cpu_per_change_ms"] = round(1000 * (rr.cpu_s() - cpu) / (2 * args.trials), 2)
            result["change_last_ms"] = {"p50": percentile(last, 0.5), "p99": percentile(last, 0.99)}
            result["change_median_ms"] = {"p50": percentile(median, 0.5), "p99": percentile(median, 0.99)}
            result["change_last_each_ms"] = [round(value, 1) for value in last]  # p99 of 10 is the max

        if args.restart:
            try:
                result["restart"] = await restart_trial(topo, daemon, rr, sim, expected, timeout)
            except (TimeoutError, subprocess.SubprocessError, RuntimeError) as error:
                # the figures above stand; the restart's failure is a finding of its own
                result["restart"] = {
                    "failed": str(error)[:300],
                    "withdrawn": sum(c.withdrawn for c in sim.clients),
                    "swept": sum(c.swept for c in sim.clients),
                    "full_tables": sim.full_tables(expected),
                }
    finally:
        result["sim_cpu_s"] = round(time.process_time() - sim_cpu, 2)
        await sim.stop()
    return result


async def restart_trial(
    topo: Topology, daemon: str, rr: Reflector, sim: Simulator, expected: int, timeout: float
) -> dict[str, Any]:
    withdrawn = sum(c.withdrawn for c in sim.clients)
    swept = sum(c.swept for c in sim.clients)
    notified = [len(c.notifications) for c in sim.clients]
    for client in sim.clients:
        client.end_of_rib_at = None
    sim.eor = 0
    started = time.monotonic()
    await asyncio.get_running_loop().run_in_executor(None, restart, topo, daemon, rr)
    back = time.monotonic() - started
    eor_s = await sim.wait(
        lambda: all(c.end_of_rib_at is not None and c.end_of_rib_at > started for c in sim.clients),
        timeout,
        "every client's End-of-RIB after the restart",
    )
    received = [body for c, n in zip(sim.clients, notified, strict=True) for body in c.notifications[n:]]
    return {
        "process_back_s": round(back, 2),
        "end_of_rib_s": round(back + eor_s, 2),
        "withdrawn": sum(c.withdrawn for c in sim.clients) - withdrawn,
        "swept": sum(c.swept for c in sim.clients) - swept,
        "full_tables": sim.full_tables(expected),
        # NOTIFICATIONs the clients got meanwhile, by code/subcode (6/7: a connection collision)
        "notifications": dict(Counter(f"{body[0]}/{body[1]}" for body in received)),
    }


def run_one(daemon: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    with reflector_lab(daemon, size) as topo, runner.in_node_netns(topo, "cl"):
        result = asyncio.run(scenario(topo, daemon, size, args))
    print(f"{daemon} n={size}: {result}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reflectors", nargs="+", choices=REFLECTORS, default=list(REFLECTORS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 500, 1000])
    parser.add_argument("--host-routes", type=int, default=0, help="/32s per client besides its block")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of keepalives only")
    parser.add_argument(
        "--restart", action="store_true", help="also restart the reflector (graceful restart)"
    )
    parser.add_argument(
        "--spread-keepalives",
        action="store_true",
        help="the clients' keepalives spread over the interval (as hosts' timers are), not all at once",
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--output", default="rrscale")
    parser.add_argument(
        "--profile",
        metavar="PY_SPY",
        help="record the reflector with this py-spy while idle and during the change trials",
    )
    args = parser.parse_args(argv)
    results = []
    for size in args.sizes:
        for daemon in args.reflectors:
            try:
                results.append(run_one(daemon, size, args))
            except (TimeoutError, RuntimeError, subprocess.SubprocessError) as error:
                print(f"{daemon} n={size}: failed: {error}", file=sys.stderr, flush=True)
                results.append({"reflector": daemon, "clients": size, "failed": str(error)})
            save(args.output, {"args": vars(args), "results": results})
    print(save(args.output, {"args": vars(args), "results": results}))
    return 0 if all("failed" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
