"""The speaker alone: N /32s from one peer (400 to an UPDATE, 10 UPDATEs to a batch, as a read
from ExaBGP holds), then their withdrawal, through bgp.speaker.Speaker.events in this process:
import policy, best path, the export plan for every neighbor, the sink (the node's FibSink,
up to the kernel routes it would ask for). No ExaBGP, no kernel, no event loop.

A node with one peer, or a reflector with two clients besides it (every route reflected twice):

    python -m bench.speaker --count 100000 --role node
    python -m bench.speaker --count 100000 --role reflector
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

from bgp.model import Attributes, Event, PeerOpen, PeerState, RouteUpdate
from bgp.prefixes import parse
from bgp.speaker import Speaker
from routed.bgpconfig import speaker_config
from routed.config import parse_config
from routed.fib.routes import Route
from routed.fib.sink import FibSink

NODE = """\
name: rx
router_id: 10.0.0.2
asn: 64512
fabric: {interface: eth1, address: 10.0.0.2}
pools: [10.64.0.0/10]
bgp: {import_allow: [10.100.0.0/14], max_prefixes: null}
peers:
  - {address: 10.0.0.1, kind: mesh}
"""
CLIENTS = "  - {address: 10.0.0.3, kind: client}\n  - {address: 10.0.0.4, kind: client}\nrole: reflector\n"


class Routes:
    """The reconciler's side of FibSink: counts what it is asked for."""

    def __init__(self) -> None:
        self.asked = 0

    def update_routes(self, source: str, upsert: Iterable[Route] = (), remove: Iterable[Any] = ()) -> None:
        self.asked += len(list(upsert)) + len(list(remove))

    def mark_ready(self, source: str) -> None:
        pass


def run(count: int, role: str) -> dict[str, float]:
    cfg = parse_config(NODE + (CLIENTS if role == "reflector" else ""), "rx.yaml")
    speaker = Speaker(speaker_config(cfg), FibSink(Routes(), 254), Path("/nonexistent"))  # type: ignore[arg-type]
    peer = ip_address("10.0.0.1")
    prefixes = [parse(f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}/32") for i in range(count)]
    attrs = Attributes(next_hop=peer)
    chunks = [prefixes[i : i + 400] for i in range(0, count, 400)]
    announced = [RouteUpdate(peer, 64512, tuple((p, attrs) for p in chunk)) for chunk in chunks]
    withdrawn = [RouteUpdate(peer, 64512, (), tuple(chunk)) for chunk in chunks]
    up: list[Event] = [PeerOpen(peer, IPv4Address("10.0.0.1"))]
    up += [PeerState(n.address, 64512, "up") for n in speaker.cfg.neighbors]
    speaker.events(up)
    timings = {}
    for name, updates in (("install_s", announced), ("withdraw_s", withdrawn)):
        gc.collect()
        started = time.perf_counter()
        for i in range(0, len(updates), 10):
            speaker.events(updates[i : i + 10])
        timings[name] = time.perf_counter() - started
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--role", choices=["node", "reflector"], default="node")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    runs = [run(args.count, args.role) for _ in range(args.runs)]
    for key in ("install_s", "withdraw_s"):
        values = [r[key] for r in runs]
        rounded = [round(v, 3) for v in values]
        print(f"{args.role} {args.count} {key}: median {statistics.median(values):.3f} of {rounded}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
