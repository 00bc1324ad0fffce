"""Which Python interface to libnftables routed's anti-spoofing table goes through (issue 25).

In a scratch network namespace, for N workloads (one veth each, an IPv4 and an IPv6 source):
- libnftables through Debian's python3-nftables: the whole table made in one transaction,
  one workload added (an element edit), the table listed as JSON (what every resync reads);
- pyroute2's nftables module (netlink, no libnftables): a table, an ipv4_addr set and the
  same N addresses as elements; it has no concatenated (ifname . address) keys, and its rules
  are raw expressions, so the table routed needs cannot be written with it at all;
- the `nft` command, for reference (the daemon does not shell out).

    python -m bench.nft [--workloads 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from bench.common import save
from routed.firewall import nft
from routed.firewall.ruleset import WorkloadSources, delete_script, desired, edit_script, replace_script
from routed.netns import NETNS_RUN_DIR, entered


def workloads(count: int) -> list[WorkloadSources]:
    return [
        WorkloadSources(
            f"rt{i:011x}", (IPv4Address(0x0A410000 + i + 1), IPv6Address((0xFD00 << 112) + i + 1))
        )
        for i in range(count)
    ]


def _timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def libnftables_round(count: int) -> dict[str, float]:
    ctx = nft.Nft()
    ctx.run(delete_script())
    want = desired(workloads(count))
    made = _timed(lambda: ctx.run(replace_script(want)))
    more = desired(workloads(count + 1))
    edited = _timed(lambda: ctx.run(edit_script(more, want)))
    listed = _timed(ctx.table)
    return {"make_ms": made, "add_one_ms": edited, "list_ms": listed}


def pyroute2_round(count: int) -> dict[str, float]:
    from pyroute2.nftables.main import NFTables

    name = f"b{uuid.uuid4().hex[:6]}"
    tables = NFTables(nfgen_family=2)
    try:
        started = time.perf_counter()
        tables.table("add", name=name)
        tables.sets("add", table=name, name="sources4", key_type="ipv4_addr")
        addresses = {str(w.ips[0]) for w in workloads(count)}
        tables.set_elems("add", table=name, set="sources4", elements=addresses)
        made = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        tables.set_elems("add", table=name, set="sources4", elements={"10.66.0.1"})
        return {"make_ms": made, "add_one_ms": (time.perf_counter() - started) * 1000}
    except Exception as exc:  # its nftables module is a prototype: say how it failed
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}  # type: ignore[dict-item]
    finally:
        with contextlib.suppress(Exception):
            tables.table("del", name=name)
        tables.close()


def nft_cli_round(count: int) -> dict[str, float]:
    want = desired(workloads(count))
    subprocess.run(["nft", "-f", "-"], input=delete_script(), text=True, check=True)
    made = _timed(
        lambda: subprocess.run(["nft", "-f", "-"], input=replace_script(want), text=True, check=True)
    )
    listed = _timed(
        lambda: subprocess.run(
            ["nft", "-j", "list", "table", "inet", "routed"], capture_output=True, check=True
        )
    )
    return {"make_ms": made, "list_ms": listed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    netns = f"rt-nft-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    results: dict[str, list[dict[str, float]]] = {"libnftables": [], "pyroute2": [], "nft_cli": []}
    try:
        with entered(NETNS_RUN_DIR / netns):
            for _ in range(args.rounds):
                results["libnftables"].append(libnftables_round(args.workloads))
                results["pyroute2"].append(pyroute2_round(args.workloads))
                results["nft_cli"].append(nft_cli_round(args.workloads))
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
    summary: dict[str, Any] = {"workloads": args.workloads, "rounds": args.rounds}
    for way, rounds in results.items():
        keys = sorted({k for r in rounds for k in r if k != "error"})
        summary[way] = {k: round(statistics.median(r[k] for r in rounds if k in r), 2) for k in keys}
        errors = {r["error"] for r in rounds if "error" in r}
        if errors:
            summary[way]["error"] = sorted(errors)[0]
    print(summary)
    save("nft", summary)


if __name__ == "__main__":
    main()
