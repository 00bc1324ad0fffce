"""How workloads and routes look on the API and in `--json` output.

Kept free of heavy imports: the CLI loads it on every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routed.dataplane.workload import WorkloadSpec
    from routed.fib.routes import Route


def workload_json(spec: WorkloadSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "netns": spec.netns,
        "ips": [str(ip) for ip in spec.ips],
        "ifname": spec.ifname,
        "host_ifname": spec.host_ifname,
    }


def route_json(route: Route) -> dict[str, Any]:
    return {
        "dst": str(route.dst),
        "table": route.table,
        "nexthops": [
            {"gateway": str(h.gateway)} if h.gateway is not None else {"device": h.device}
            for h in route.nexthops
        ],
    }
