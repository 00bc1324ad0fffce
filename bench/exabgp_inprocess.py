"""Issue 18's prototype (a): ExaBGP inside the receiving process, UPDATEs taken as ExaBGP's
own parsed objects through a hook, with no API process, no JSON and no pipe.

Run by `bench.exabgp_receive --modes inprocess` inside the receiving node, as
`python -m bench.exabgp_inprocess CONF OUT COUNT`: ExaBGP's reactor runs here with routed's
launcher patches; its Processes (the API side) is replaced by one whose UPDATE callback
turns each ExaBGP Update into routed's RouteUpdate (what `messages.parse_line` makes from
the JSON today, for the attributes an iBGP fabric carries). Once COUNT routes have come,
it writes `routes N vmhwm_kb K vmrss_kb R` to OUT. The driver takes this process's CPU
from /proc, so the figure is ExaBGP's decoding and the conversion together: compare it
with the sum of ExaBGP's and routed's per-route CPU of the other modes.

A prototype only: ExaBGP's Reactor.run blocks, so in routed it would need its loop turned
into steps driven by asyncio (docs/upstream/exabgp/ lists that as an upstream change).
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any

from bgp.model import AsPathSegment, Attributes, Origin, RouteUpdate
from bgp.prefixes import from_packed

ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF, COMMUNITY, ORIGINATOR_ID, CLUSTER_LIST = 1, 2, 3, 4, 5, 8, 9, 10
ANNOUNCE = 1  # exabgp.bgp.message.action.Action.ANNOUNCE (an IntEnum)


def _attributes(exa: Any, next_hop: Any) -> Attributes:
    as_path: tuple[AsPathSegment, ...] = ()
    if AS_PATH in exa:
        as_path = tuple(
            AsPathSegment(
                "as-set" if type(segment).__name__ == "SET" else "as-sequence", tuple(int(a) for a in segment)
            )
            for segment in exa[AS_PATH].aspath
        )
    return Attributes(
        next_hop=next_hop,
        origin=Origin(exa[ORIGIN].origin) if ORIGIN in exa else Origin.IGP,
        as_path=as_path,
        med=exa[MED].med if MED in exa else None,
        local_pref=exa[LOCAL_PREF].localpref if LOCAL_PREF in exa else None,
        communities=tuple(
            (int.from_bytes(c.community[:2], "big"), int.from_bytes(c.community[2:], "big"))
            for c in exa[COMMUNITY].communities
        )
        if COMMUNITY in exa
        else (),
        originator_id=ipaddress.IPv4Address(exa[ORIGINATOR_ID].top()) if ORIGINATOR_ID in exa else None,
        cluster_list=tuple(ipaddress.IPv4Address(c.top()) for c in exa[CLUSTER_LIST].clusters)
        if CLUSTER_LIST in exa
        else (),
    )


def to_route_update(
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address, peer_asn: int, update: Any
) -> RouteUpdate:
    """routed's RouteUpdate from ExaBGP's Update object: one Attributes per next hop."""
    announced = []
    withdrawn = []
    shared: dict[bytes, Attributes] = {}
    for nlri in update.nlris:
        cidr = getattr(nlri, "cidr", None)
        if cidr is None:  # End-of-RIB's marker (an EOR.NLRI): routed's EndOfRib event, not a route
            continue
        packed, length = cidr._packed, cidr.mask
        bits = 8 * len(packed)
        value = int.from_bytes(packed, "big") >> (bits - length) << (bits - length) if length else 0
        prefix = from_packed(
            value.to_bytes(len(packed), "big"), length
        )  # bits past the length: not part of it
        if nlri.action == ANNOUNCE:
            packed = nlri.nexthop.ton()
            attrs = shared.get(packed)
            if attrs is None:
                attrs = shared[packed] = _attributes(update.attributes, ipaddress.ip_address(packed))
            announced.append((prefix, attrs))
        else:
            withdrawn.append(prefix)
    return RouteUpdate(peer, peer_asn, tuple(announced), tuple(withdrawn))


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    conf, out, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    from bgp.exabgp import launch

    launch.patch()
    import exabgp.reactor.loop as reactor_loop  # type: ignore[import-untyped]
    from exabgp.bgp.message import Message  # type: ignore[import-untyped]
    from exabgp.reactor.api.processes import Processes  # type: ignore[import-untyped]

    update_code = Message.CODE.UPDATE
    received = [0]

    class InProcess(Processes):  # type: ignore[misc]
        """No API process: the reactor's callbacks come straight to us."""

        def start(self, configuration: Any, restart: bool = False) -> None:
            self.fds: list[int] = []

        def write(self, process: Any, string: Any, neighbor: Any = None) -> bool:
            return True  # up/down/EOR text: the prototype needs none of it

        def received(self) -> Any:
            return iter(())

        def message(self, message_id: int, neighbor: Any, direction: str, message: Any, *rest: Any) -> None:
            if message_id != update_code or direction != "receive":
                return
            peer = ipaddress.ip_address(neighbor["peer-address"].top())
            event = to_route_update(peer, int(neighbor["peer-as"]), message)
            received[0] += len(event.announced)
            if received[0] >= count and not out.exists():
                out.write_text(f"routes {received[0]} vmhwm_kb {_vm('VmHWM')} vmrss_kb {_vm('VmRSS')}\n")

    reactor_loop.Processes = InProcess
    from exabgp.application.main import main as exabgp_main  # type: ignore[import-untyped]

    sys.argv = [sys.argv[0], "server", conf]
    exabgp_main()


if __name__ == "__main__":
    main()
