"""Randomized soak of labs/dual-rr.clab.yml: no route is ever lost or left stale.

For `--minutes`, random events hit the lab (workloads added and deleted on random hosts,
host daemons SIGKILLed or SIGTERMed and started again, ExaBGP killed, one or both
reflectors killed and started again, a host's fabric link flapped, every daemon at once
restarted: a power event) while pings run at 20 packets/s around a ring of the four
containers that exist throughout. At each checkpoint, and at the end, the lab is given a
deadline to converge and `bench.truth` compares every host's kernel routes with the
ground truth; no stale route may be left. Every lost packet is accounted for: the only
place the design allows loss here is a stream whose source or destination host had its
fabric link down (the data plane itself was cut), plus a short margin after it.

The schedule comes from `--seed` (printed; the same seed replays the same events).

    python -m bench.soak --minutes 30                   # the long run of docs/benchmarks.md
    python -m bench.soak --minutes 1 --seed 7 --cover   # the suite's short run: every kind at least once
    python -m bench.soak --events power --count 5       # mass restarts only, with recovery times
    python -m bench.soak --trace /tmp/soak-trace        # keep `ip -ts monitor` of every node and the logs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import truth
from bench.common import LABS, pid_in_node, save
from routed.lab import runner
from routed.lab.topology import Topology, load_topology

HOSTS = {"h1": "10.65.1.1", "h2": "10.65.2.1", "h3": "10.65.3.1", "h4": "10.65.4.1"}
REFLECTORS = ("rr1", "rr2")
RING = [("h1", "h2"), ("h2", "h3"), ("h3", "h4"), ("h4", "h1")]
EVENTS = ("workload-add", "workload-del", "host-restart", "exabgp-kill", "rr-restart", "link-flap", "power")
WEIGHTS = {
    "workload-add": 4,
    "workload-del": 3,
    "host-restart": 3,
    "exabgp-kill": 2,
    "rr-restart": 2,
    "link-flap": 1,
    "power": 1,
}
RATE = 20
FLAP_MARGIN = 3.0  # seconds after a link comes back in which its streams may still lose packets
CONVERGE_DEADLINE = 60.0
LINE = re.compile(r"^\[(\d+\.\d+)\] (?:(\d+) bytes from .* icmp_seq=(\d+)|no answer yet for icmp_seq=(\d+))")


@dataclass
class Stream:
    src: str
    dst: str
    process: subprocess.Popen[str] | None = None
    answered: set[int] = field(default_factory=set)
    unanswered: dict[int, float] = field(default_factory=dict)  # seq -> when ping gave up waiting
    highest: int = 0

    def read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            match = LINE.match(line)
            if not match:
                continue
            stamp = float(match.group(1))
            if match.group(3):
                seq = int(match.group(3))
                self.answered.add(seq)
                self.unanswered.pop(seq, None)
            else:
                seq = int(match.group(4))
                self.unanswered.setdefault(seq, stamp)
            self.highest = max(self.highest, seq)

    def lost(self) -> dict[int, float]:
        return {seq: t for seq, t in self.unanswered.items() if seq not in self.answered}


class Soak:
    def __init__(self, topo: Topology, rng: random.Random) -> None:
        self.topo = topo
        self.rng = rng
        self.extra: dict[str, tuple[str, str]] = {}  # workload id -> (host, ip)
        self.next_extra = 0
        self.flaps: list[tuple[str, float, float]] = []  # (host, down at, up at)
        self.log: list[dict[str, Any]] = []

    # --- plumbing --------------------------------------------------------------------

    def sh(self, node: str, *argv: str, check: bool = True) -> str:
        result = runner.run_in_node(self.topo, node, list(argv), capture=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"{node}: {' '.join(argv)}: {result.stderr or result.stdout}")
        return result.stdout

    def pid(self, node: str, needle: str) -> int | None:
        return pid_in_node(self.topo, node, needle)

    def kill(self, node: str, sig: signal.Signals) -> None:
        pid = self.pid(node, "routed run")
        if pid is None:
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + 20
        while self.pid(node, "routed run") == pid and time.monotonic() < deadline:
            time.sleep(0.05)

    def start(self, node: str) -> None:
        if self.pid(node, "routed run") is None:
            runner.start(self.topo, node)

    def status(self, node: str) -> dict[str, Any] | None:
        result = runner.run_in_node(self.topo, node, ["routed", "status", "--json"], capture=True)
        return json.loads(result.stdout) if result.returncode == 0 else None

    # --- events ------------------------------------------------------------------------

    def event(self, kind: str) -> dict[str, Any]:
        rng = self.rng
        if kind == "workload-add":
            host = rng.choice(sorted(HOSTS))
            self.next_extra += 1
            wid = f"soak{self.next_extra}"
            used = {ip for _, ip in self.extra.values()}
            ip = rng.choice([a for n in range(100, 250) if (a := f"10.65.{host[1]}.{n}") not in used])
            self.sh(host, "ip", "netns", "add", wid)
            self.sh(host, "routed", "workload", "add", wid, "--netns", wid, "--ip", ip)
            self.extra[wid] = (host, ip)
            return {"event": kind, "host": host, "workload": wid, "ip": ip}
        if kind == "workload-del":
            if not self.extra:
                return self.event("workload-add")
            wid = rng.choice(sorted(self.extra))
            host, ip = self.extra.pop(wid)
            self.sh(host, "routed", "workload", "del", wid)
            self.sh(host, "ip", "netns", "del", wid)
            return {"event": kind, "host": host, "workload": wid, "ip": ip}
        if kind == "host-restart":
            host = rng.choice(sorted(HOSTS))
            sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
            down = round(rng.uniform(0.5, 3.0), 2)
            self.kill(host, sig)
            time.sleep(down)
            self.start(host)
            return {"event": kind, "host": host, "signal": sig.name, "down_s": down}
        if kind == "exabgp-kill":
            node = rng.choice([*sorted(HOSTS), *REFLECTORS])
            pid = self.pid(node, "bgp.exabgp.launch")
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            return {"event": kind, "node": node}
        if kind == "rr-restart":
            which = rng.choice([["rr1"], ["rr2"], ["rr1", "rr2"]])
            down = round(rng.uniform(1.0, 8.0), 2)
            for rr in which:
                self.kill(rr, signal.SIGKILL)
            time.sleep(down)
            for rr in which:
                self.start(rr)
            return {"event": kind, "reflectors": which, "down_s": down}
        if kind == "link-flap":
            host = rng.choice(sorted(HOSTS))
            down = round(rng.uniform(0.5, 2.0), 2)
            went = time.time()
            self.sh(host, "ip", "link", "set", "eth1", "down")
            time.sleep(down)
            self.sh(host, "ip", "link", "set", "eth1", "up")
            self.flaps.append((host, went, time.time()))
            return {"event": kind, "host": host, "down_s": down}
        if kind == "power":
            return self.power()
        raise ValueError(kind)

    def power(self) -> dict[str, Any]:
        """Every daemon at once, as after a power event that left the kernels' routes."""
        nodes = [*REFLECTORS, *sorted(HOSTS)]
        pids = [p for n in nodes if (p := self.pid(n, "routed run")) is not None]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while any(self.pid(n, "routed run") for n in nodes) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)
        started = time.monotonic()
        for node in nodes:
            self.start(node)
        recovered = self.converge()
        return {
            "event": "power",
            "daemons": len(pids),
            "recovered_s": round(time.monotonic() - started, 2) if recovered["differences"] == [] else None,
            "checkpoint": recovered,
        }

    # --- checkpoints ------------------------------------------------------------------------

    def converge(self, deadline: float = CONVERGE_DEADLINE) -> dict[str, Any]:
        """Wait until every host routes exactly the truth, every session is up, nothing is stale."""
        started = time.monotonic()
        problems: list[str] = []
        while time.monotonic() - started < deadline:
            problems = [str(d) for d in truth.check(self.topo).differences]
            for node in [*REFLECTORS, *sorted(HOSTS)]:
                status = self.status(node)
                if status is None:
                    problems.append(f"{node}: daemon does not answer")
                    continue
                bgp = status["bgp"]
                down = [p["address"] for p in bgp["peers"] if p["state"] != "up"]
                if down:
                    problems.append(f"{node}: sessions not up: {down}")
                if bgp["stale"]:
                    problems.append(f"{node}: {bgp['stale']} stale routes")
            if not problems:
                return {"converged_s": round(time.monotonic() - started, 2), "differences": []}
            time.sleep(0.5)
        return {"converged_s": None, "differences": problems}


def start_streams(topo: Topology) -> list[Stream]:
    streams = []
    for src, dst in RING:
        stream = Stream(src, dst)
        argv = [
            "ip",
            "netns",
            "exec",
            "web",
            "ping",
            "-D",
            "-O",
            "-n",
            "-i",
            str(1 / RATE),
            "-W",
            "1",
            HOSTS[dst],
        ]
        stream.process = subprocess.Popen(
            runner.nsenter_argv(runner.holder_pid(topo, src), argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=stream.read, daemon=True).start()
        streams.append(stream)
    return streams


def start_monitors(topo: Topology, trace: Path) -> list[subprocess.Popen[bytes]]:
    """`ip -ts monitor` of routes, neighbours, links and addresses in every node: to place a lost
    packet against what the kernel did at that moment."""
    trace.mkdir(parents=True, exist_ok=True)
    monitors = []
    for node in [*REFLECTORS, *sorted(HOSTS)]:
        with open(trace / f"{node}.monitor", "wb") as out:
            argv = ["ip", "-ts", "monitor", "route", "neigh", "link", "addr"]
            monitors.append(
                subprocess.Popen(
                    runner.nsenter_argv(runner.holder_pid(topo, node), argv),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return monitors


def explain(streams: list[Stream], flaps: list[tuple[str, float, float]]) -> dict[str, Any]:
    """Lost packets per stream, split into those a link flap of its hosts explains and the rest."""
    out: dict[str, Any] = {}
    for stream in streams:
        lost = stream.lost()
        explained = {
            seq
            for seq, when in lost.items()
            for host, down, up in flaps
            if host in (stream.src, stream.dst) and down - 1.5 <= when <= up + FLAP_MARGIN + 1.5
        }
        out[f"{stream.src}->{stream.dst}"] = {
            "sent": stream.highest,
            "lost": len(lost),
            "lost_during_link_flaps": len(explained),
            "unexplained": sorted(set(lost) - explained),
            # when ping gave up on each (epoch seconds): to match with --trace and the event log
            "unexplained_at": [round(lost[seq], 3) for seq in sorted(set(lost) - explained)],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--events", nargs="+", choices=EVENTS, default=list(EVENTS))
    parser.add_argument("--count", type=int, default=None, help="stop after this many events")
    parser.add_argument("--checkpoint-every", type=int, default=8, help="events between checkpoints")
    parser.add_argument(
        "--cover",
        action="store_true",
        help="begin with every event kind once (in a seeded order), then random",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        default=None,
        help="directory for each node's `ip -ts monitor` and the daemons' logs (kept after the lab goes)",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"soak seed {seed} (replay with --seed {seed})", flush=True)
    rng = random.Random(seed)
    topo = load_topology(LABS / "dual-rr.clab.yml", name=f"soak{os.getpid()}", prefix="rt")
    runner.up(topo)
    streams: list[Stream] = []
    monitors: list[subprocess.Popen[bytes]] = []
    try:
        soak = Soak(topo, rng)
        first = soak.converge(90)
        if first["differences"]:
            raise RuntimeError(f"the lab did not converge before the soak: {first['differences']}")
        if args.trace is not None:
            monitors = start_monitors(topo, args.trace)
        streams = start_streams(topo)
        time.sleep(2)
        checkpoints = []
        events: list[dict[str, Any]] = []
        kinds = list(args.events)
        weights = [WEIGHTS[k] for k in kinds]
        ends = time.monotonic() + args.minutes * 60
        opening = rng.sample(kinds, len(kinds)) if args.cover else []
        if "workload-add" in opening and "workload-del" in opening:  # something to delete first
            opening.remove("workload-add")
            opening.insert(0, "workload-add")
        while time.monotonic() < ends and (args.count is None or len(events) < args.count):
            kind = opening.pop(0) if opening else rng.choices(kinds, weights)[0]
            pause = round(rng.uniform(1.0, 6.0), 2)
            record = {
                "at_s": round(args.minutes * 60 - (ends - time.monotonic()), 1),
                "wall": round(time.time(), 2),
                **soak.event(kind),
            }
            events.append(record)
            print(f"  {record}", flush=True)
            if len(events) % args.checkpoint_every == 0:
                point = soak.converge()
                checkpoints.append({"after_events": len(events), **point})
                print(f"checkpoint after {len(events)} events: {point}", flush=True)
            time.sleep(pause)
        point = soak.converge()
        checkpoints.append({"after_events": len(events), "final": True, **point})
        print(f"final checkpoint: {point}", flush=True)
        time.sleep(2)  # the last replies
    finally:
        for stream in streams:
            if stream.process is not None:
                os.killpg(stream.process.pid, signal.SIGINT)
                stream.process.wait(timeout=10)
        for monitor in monitors:
            os.killpg(monitor.pid, signal.SIGTERM)
            monitor.wait(timeout=10)
        if args.trace is not None:
            shutil.copytree(runner.state_dir(topo) / "logs", args.trace / "logs", dirs_exist_ok=True)
        runner.down(topo)
    packets = explain(streams, soak.flaps)
    differences = sum(len(c["differences"]) for c in checkpoints)
    unexplained = sum(len(p["unexplained"]) for p in packets.values())
    by_kind: dict[str, int] = {}
    for record in events:
        by_kind[record["event"]] = by_kind.get(record["event"], 0) + 1
    recoveries = [e["recovered_s"] for e in events if e["event"] == "power"]
    summary = {
        "seed": seed,
        "minutes": args.minutes,
        "events": len(events),
        "by_kind": by_kind,
        "checkpoints": len(checkpoints),
        "differences": differences,
        "packets": packets,
        "unexplained_lost": unexplained,
        "power_recovered_s": recoveries,
    }
    path = save("soak", {**summary, "event_log": events, "checkpoint_log": checkpoints})
    print(json.dumps(summary, indent=1))
    print(f"results: {path}")
    return 0 if differences == 0 and unexplained == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
