"""Bulk: a BIRD2 injector announces N /32s; time until all N are in the receiver's kernel FIB,
then until all are gone after the injector withdraws them (the withdraw storm), and the
receiving daemon's peak RSS. Same injector, same two namespaces, for every receiver.

    python -m bench.bulk --receivers routed bird frr --sizes 1000 10000 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench.common import RECEIVERS, birdc, daemon_cpu_s, daemon_memory_kb, save, two_node_lab, wait_ready
from bench.netlink_count import RouteCounter

PREFIX_BYTE0, PREFIX_BYTE1 = 10, 100


def _injected(dst: bytes, dst_len: int) -> bool:
    return dst_len == 32 and dst[0] == PREFIX_BYTE0 and 100 <= dst[1] <= 103


def measure(receiver: str, count: int, timeout: float) -> dict[str, Any]:
    with two_node_lab(receiver, count) as topo:
        wait_ready(topo, receiver)
        counter = RouteCounter(topo.node("rx").netns, _injected)
        cpu_before = daemon_cpu_s(topo.node("rx").netns)
        try:
            start = time.time()
            birdc(topo, "inj", "enable", "injected")
            installed = counter.wait_for(count, timeout)
            result: dict[str, Any] = {"receiver": receiver, "n": count, "overflows": 0}
            result["install_s"] = None if installed is None else installed - start
            result["rss_kb"] = daemon_memory_kb(topo.node("rx").netns)
            cpu = daemon_cpu_s(topo.node("rx").netns)
            result["install_cpu_s"] = {k: round(v - cpu_before.get(k, 0.0), 2) for k, v in cpu.items()}
            if installed is not None:
                start = time.time()
                birdc(topo, "inj", "disable", "injected")
                gone = counter.wait_for(0, timeout)
                result["withdraw_s"] = None if gone is None else gone - start
            result["overflows"] = counter.overflows
            return result
        finally:
            counter.close()


def fmt(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "timeout"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--receivers", nargs="+", default=list(RECEIVERS), choices=RECEIVERS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000, 100000])
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    results = []
    print(f"{'receiver':<10}{'N':>8}{'install s':>11}{'withdraw s':>12}{'peak RSS MB':>13}")
    for count in args.sizes:
        for receiver in args.receivers:
            r = measure(receiver, count, args.timeout)
            results.append(r)
            rss = sum(r["rss_kb"].values()) / 1024
            print(
                f"{receiver:<10}{count:>8}{fmt(r['install_s']):>11}{fmt(r.get('withdraw_s')):>12}{rss:>13.1f}",
                flush=True,
            )
    print(f"results: {save('bulk', {'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
