"""Failover: a host's routing daemon dies; how long until the other host has withdrawn its routes?

One reflector, two hosts, hold time 9 s everywhere, for routed and for BIRD2 (set up as in
bench.convergence). Two ways to die:
- kill:   SIGKILL of the daemon (and, for routed, its ExaBGP, which dies with it): the
          kernel closes the TCP sessions, so the reflector knows at once;
- freeze: SIGSTOP of the daemon(s): sessions stay open and silent until the hold timer.
`bird-bfd` and `routed-bfd` are the same with BFD on every session (50 ms x 3), which bounds
the freeze case. Frozen means the whole host's routing: for routed-bfd, its BFD process too
(killed, routed's BFD process lives on, as it does through a restart: that is its design).

Graceful restart is off on both sides here: this measures how fast a dead speaker is
noticed. With it on (routed's default), a daemon that dies while its kernel forwards is
*meant* to keep its routes for its restart time (bench.restarts counts the packets that
saves); telling a dead path from a restarting daemon is BFD's job.

    python -m bench.failover --trials 3
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import generated_lab, node_exec, processes, reflector_topology, save
from bench.convergence import bird_lab
from bench.netlink_count import RouteCounter
from routed.lab.topology import Topology

HOST = """\
name: {name}
router_id: {address}
asn: 64512
fabric: {{interface: eth1, address: {address}}}
pools: [10.65.0.0/16]
bgp: {{hold_time: 9, graceful_restart: {{enabled: false}}}}
peers:
  - {{address: 10.0.0.1, kind: reflector{bfd}}}
"""
REFLECTOR = """\
name: rr
router_id: 10.0.0.1
asn: 64512
role: reflector
fabric: {{interface: eth1, address: 10.0.0.1}}
pools: [10.65.0.0/16]
bgp: {{hold_time: 9, graceful_restart: {{enabled: false}}}}
peers:
  - {{address: 10.0.0.11, kind: client{bfd}}}
  - {{address: 10.0.0.12, kind: client{bfd}}}
"""
BFD = ", bfd: {interval_ms: 50, multiplier: 3}"


@contextmanager
def routed_lab(bfd: bool = False) -> Iterator[Topology]:
    topology = reflector_topology("routed", "yaml", "/etc/routed/routed.yaml")
    extra = BFD if bfd else ""
    files = {
        "rr.yaml": REFLECTOR.format(bfd=extra),
        "h1.yaml": HOST.format(name="h1", address="10.0.0.11", bfd=extra),
        "h2.yaml": HOST.format(name="h2", address="10.0.0.12", bfd=extra),
    }
    with generated_lab(topology, files) as topo:
        yield topo


DAEMONS = ("routed", "bird", "routed-bfd", "bird-bfd")


def daemon_pids(topo: Topology, daemon: str, how: str) -> list[int]:
    """What dies or freezes on host A: the routing daemon with its helpers (routed: ExaBGP,
    and when frozen, the BFD process)."""
    if daemon.startswith("routed"):
        needles = ["routed run", "exabgp"] + (["routed.bfd.process"] if how == "freeze" else [])
    else:
        needles = ["bird -f"]
    found = []
    for pid in processes(topo.node("h1").netns):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(needle in cmdline for needle in needles):
            found.append(pid)
    return found


def trial(daemon: str, how: str) -> float:
    bfd = daemon.endswith("-bfd")
    lab = routed_lab(bfd) if daemon.startswith("routed") else bird_lab(bfd=bfd)
    with lab as topo:
        ip = "10.65.1.77"
        if daemon.startswith("routed"):
            node_exec(topo, "h1", "ip", "netns", "add", "w")
            node_exec(topo, "h1", "routed", "workload", "add", "w", "--netns", "w", "--ip", ip)
        else:
            node_exec(topo, "h1", "ip", "route", "add", f"{ip}/32", "dev", "cali0", "proto", "boot")
        packed = ipaddress.ip_address(ip).packed
        counter = RouteCounter(topo.node("h2").netns, lambda dst, length: length == 32 and dst == packed)
        try:
            deadline = time.monotonic() + 60
            while ip not in node_exec(topo, "h2", "ip", "route"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the route never reached h2")
                time.sleep(0.1)
            counter.present.add(packed)
            if bfd and daemon.startswith("routed"):
                wait_bfd_up(topo)
            victims = daemon_pids(topo, daemon, how)  # found first: the clock starts at the signal
            start = time.time()
            for pid in victims:
                # ExaBGP dies with its daemon (PDEATHSIG) and may be gone by its turn
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
            gone = counter.wait_for(0, 60)
            if how == "freeze":
                for pid in victims:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
            if gone is None:
                raise RuntimeError(f"{daemon}/{how}: h2 kept the route for 60 s")
            return (gone - start) * 1000
        finally:
            counter.close()


def wait_bfd_up(topo: Topology) -> None:
    """The reflector's BFD session with h1 up (past its slow start), as in a running fabric."""
    deadline = time.monotonic() + 30
    while not any(
        peer["address"] == "10.0.0.11" and peer.get("bfd") == "up"
        for peer in json.loads(node_exec(topo, "rr", "routed", "status", "--json"))["bgp"]["peers"]
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("BFD between rr and h1 never came up")
        time.sleep(0.2)
    time.sleep(1)  # the poll sequence to 50 ms done


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--daemons", nargs="+", default=list(DAEMONS), choices=DAEMONS)
    parser.add_argument("--ways", nargs="+", default=["kill", "freeze"], choices=["kill", "freeze"])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    print(f"{'daemon':<12}{'death':<8}{'p50 ms':>10}{'max ms':>10}")
    for daemon in args.daemons:
        for how in args.ways:
            times = [trial(daemon, how) for _ in range(args.trials)]
            results.append({"daemon": daemon, "death": how, "ms": times})
            print(f"{daemon:<12}{how:<8}{statistics.median(times):>10.1f}{max(times):>10.1f}", flush=True)
    print(f"results: {save('failover', {'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
