"""Where a bulk load's time goes in the daemon, stage by stage: the floor of each (issue 18).

The same N /32s as bench.bulk, 400 to an UPDATE, through routed's own code in this
process (the daemon's garbage-collector settings, no lab, no ExaBGP, no event-loop hops):

- decode: the raw UPDATEs into RouteUpdates (bgp/exabgp/wire.py, what routed does since
  ExaBGP hands plain UPDATEs over undecoded);
- rib: the RouteUpdates into the RIB (Adj-RIB-In, import policy, best path);
- fib: the Loc-RIB's changes into kernel routes and the reconciler's plan
  (gateway_route, Reconciler.update_routes' bookkeeping, plan_routes);
- encode: the plan into rtnetlink requests (NetlinkKernel._encode, timed inside apply);
- kernel: the requests sent in batches into a scratch namespace and acknowledged
  (NetlinkKernel.apply minus its encoding: the kernel's own insertion, which every
  daemon pays, BIRD2 and FRR included).

Then the withdraw storm the same way. What this leaves out of bench.bulk's wall time is
ExaBGP (its CPU is in bench.bulk's install_cpu_s), the pipe and the event loop.

    python -m bench.stages --count 100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import save
from bench.memory import POLICY, SENDER, update_bodies, withdraw_bodies
from bgp.exabgp.wire import decode_update
from bgp.model import RouteUpdate
from bgp.rib import Changes, Rib
from routed.fib.kernel import NetlinkKernel
from routed.fib.plan import RoutePlan, plan_routes
from routed.fib.routes import MAIN_TABLE, Route, RouteKey, gateway_route
from routed.gctune import tune

STAGES = ("decode", "rib", "fib", "encode", "kernel")


@contextmanager
def scratch_namespace() -> Iterator[str]:
    """A namespace where the sender's next hop (10.0.0.1) is on a link: rt-stages-<random>."""
    name = f"rt-stages-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (
            ["link", "add", "eth1", "type", "veth", "peer", "name", "eth1-peer"],  # no dummy module here
            ["link", "set", "eth1-peer", "up"],
            ["link", "set", "eth1", "up"],
            ["addr", "add", "10.0.0.2/24", "dev", "eth1"],
        ):
            subprocess.run(["ip", "-n", name, *command], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


class TimedKernel(NetlinkKernel):
    """routed's netlink edge, timing its request encoding from inside apply()."""

    def __init__(self, table: int, netns: str) -> None:
        super().__init__(table, netns)
        self.encoding = 0.0

    def _encode(self, action: str, route: Route, seq: int, ack: bool) -> bytes:
        started = time.perf_counter()
        try:
            return super()._encode(action, route, seq, ack)
        finally:
            self.encoding += time.perf_counter() - started


class Pipeline:
    """routed's stages from UPDATE bytes to the kernel, each timed on its own."""

    def __init__(self, kernel: TimedKernel) -> None:
        self.kernel = kernel
        self.rib = Rib(POLICY)
        self.wanted: dict[RouteKey, Route] = {}
        self.installed: dict[RouteKey, Route] = {}
        self.spent = dict.fromkeys(STAGES, 0.0)

    def _timed(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.spent[stage] += now - started
        return now

    async def run(self, bodies: list[bytes]) -> None:
        for body in bodies:
            started = time.perf_counter()
            update = decode_update(body, SENDER.address, SENDER.asn)
            assert isinstance(update, RouteUpdate)
            started = self._timed("decode", started)
            changes: Changes = self.rib.update(SENDER, update.announced, update.withdrawn).changes
            started = self._timed("rib", started)
            only = set()
            for prefix, selection in changes.items():
                key = (MAIN_TABLE, prefix)
                only.add(key)
                if selection is None:
                    self.wanted.pop(key, None)
                else:
                    route = gateway_route(prefix, selection.next_hops)
                    self.wanted[route.key] = route
            plan = plan_routes(
                {k: r for k in only if (r := self.wanted.get(k))}, self.installed, set(), only=only
            )
            started = self._timed("fib", started)
            await self._apply(plan)

    async def _apply(self, plan: RoutePlan) -> None:
        encoded_before = self.kernel.encoding
        started = time.perf_counter()
        failures = await self.kernel.apply(plan)
        elapsed = time.perf_counter() - started
        assert not failures, failures[:3]
        encoding = self.kernel.encoding - encoded_before
        self.spent["encode"] += encoding
        # the rest of apply() is the socket's and the kernel's (and batching the requests)
        self.spent["kernel"] += elapsed - encoding
        for route in plan.add:
            self.installed[route.key] = route
        for route in plan.delete:
            del self.installed[route.key]


async def measure(count: int) -> dict[str, Any]:
    with scratch_namespace() as netns:
        kernel = TimedKernel(MAIN_TABLE, netns)
        try:
            result: dict[str, Any] = {"n": count}
            pipeline = Pipeline(kernel)
            for phase, bodies in (("install", update_bodies(count)), ("withdraw", withdraw_bodies(count))):
                pipeline.spent = dict.fromkeys(STAGES, 0.0)
                started = time.perf_counter()
                await pipeline.run(bodies)
                wall = time.perf_counter() - started
                expected = count if phase == "install" else 0
                assert len(pipeline.installed) == expected, (phase, len(pipeline.installed))
                result[phase] = {
                    # wall time of the loop: the stages' sum plus the timing itself (until
                    # 2026-11-27 the loop encoded each batch twice, and this ran one encode longer)
                    "total_s": round(wall, 3),
                    "stages_sum_s": round(sum(pipeline.spent.values()), 3),
                    "us_per_route": {k: round(v / count * 1e6, 2) for k, v in pipeline.spent.items()},
                }
            return result
        finally:
            await kernel.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.stages needs root (it makes a scratch network namespace)", file=sys.stderr)
        return 2
    tune()
    result = asyncio.run(measure(args.count))
    print(f"{'phase':<10}{'sum s':>9}" + "".join(f"{s:>9}" for s in STAGES) + "  (µs per route)")
    for phase in ("install", "withdraw"):
        r = result[phase]
        print(f"{phase:<10}{r['stages_sum_s']:>9}" + "".join(f"{r['us_per_route'][s]:>9}" for s in STAGES))
    print(f"results: {save('stages', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
