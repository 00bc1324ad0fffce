"""Bytes per route in the daemon, stage by stage (issue 18, item 2), measured with tracemalloc
in this process over the daemon's own code, no lab:

- decoded: the RouteUpdates of N /32s received 400 to an UPDATE (bgp/exabgp/wire.py, one
  Attributes object per UPDATE, as the JSON path also shares them);
- rib: the same routes held in the RIB (Adj-RIB-In, accepted paths, Loc-RIB) once the
  decoded messages are gone;
- fib: the kernel routes made from the Loc-RIB, held by key as the reconciler holds them.

    python -m bench.memory --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import gc
import struct
import sys
import tracemalloc
from ipaddress import IPv4Address, ip_address, ip_network
from typing import Any

from bench.common import save
from bgp.exabgp.wire import decode_update
from bgp.model import Peer, RouteUpdate
from bgp.policy import ImportPolicy
from bgp.rib import Rib
from routed.fib.routes import gateway_route

PER_UPDATE = 400
SENDER = Peer(ip_address("10.0.0.1"), 64512, 64512, IPv4Address("10.0.0.1"))
POLICY = ImportPolicy(
    pools=(ip_network("10.96.0.0/11"),),
    router_id=IPv4Address("10.0.0.2"),
    local_asn=64512,
    own_addresses=frozenset({ip_address("10.0.0.2")}),
)


def _nlri_chunks(count: int) -> list[bytes]:
    """The NLRI of the bulk benchmark's /32s (10.100.0.0 on), PER_UPDATE to a chunk."""
    return [
        b"".join(
            bytes([32, 10, 100 + (i >> 16), (i >> 8) & 255, i & 255])
            for i in range(start, min(count, start + PER_UPDATE))
        )
        for start in range(0, count, PER_UPDATE)
    ]


def update_bodies(count: int) -> list[bytes]:
    """UPDATEs as BIRD2 sends the bulk benchmark's /32s: origin, empty AS_PATH, next hop, local pref."""
    attrs = (
        b"\x40\x01\x01\x00"
        + b"\x40\x02\x00"
        + b"\x40\x03\x04"
        + bytes([10, 0, 0, 1])
        + b"\x40\x05\x04"
        + struct.pack("!I", 100)
    )
    return [struct.pack("!HH", 0, len(attrs)) + attrs + nlri for nlri in _nlri_chunks(count)]


def withdraw_bodies(count: int) -> list[bytes]:
    """UPDATEs withdrawing the same /32s (withdrawn routes, no attributes)."""
    return [struct.pack("!H", len(nlri)) + nlri + b"\0\0" for nlri in _nlri_chunks(count)]


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def measure(count: int) -> dict[str, Any]:
    bodies = update_bodies(count)
    tracemalloc.start()
    base = traced()
    updates = [decode_update(body, SENDER.address, SENDER.asn) for body in bodies]
    decoded = traced() - base
    rib = Rib(POLICY)
    for update in updates:
        assert isinstance(update, RouteUpdate)
        rib.update(SENDER, update.announced, update.withdrawn)
    del updates
    held = traced() - base
    fib = {}
    for prefix, selection in rib.loc_rib().items():
        route = gateway_route(prefix, selection.next_hops)
        fib[route.key] = route
    with_fib = traced() - base
    tracemalloc.stop()
    assert len(fib) == count, len(fib)
    return {
        "n": count,
        "decoded_bytes_per_route": round(decoded / count),
        "rib_bytes_per_route": round(held / count),
        "fib_bytes_per_route": round((with_fib - held) / count),
        "total_bytes_per_route": round(with_fib / count),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    args = parser.parse_args()
    results = []
    print(f"{'routes':>8}{'decoded':>10}{'rib':>8}{'fib':>8}{'total':>8}  (bytes per route)")
    for count in args.sizes:
        r = measure(count)
        results.append(r)
        print(
            f"{count:>8}{r['decoded_bytes_per_route']:>10}{r['rib_bytes_per_route']:>8}"
            f"{r['fib_bytes_per_route']:>8}{r['total_bytes_per_route']:>8}"
        )
    print(f"results: {save('memory', {'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
