"""`routed lab generate --tors K`: the routed fabric of racks (see routed.lab.generate).

Each host sits on a /31 to its rack's ToR; a ToR is BIRD2 (the lab image runs it with
NODE_DAEMON=bird), peers eBGP with each host of its rack and with the spine, passes on only
the pool's prefixes and installs what it learns; the spine (BIRD2, only with two or more
ToRs) does the same between the racks. Pure: texts only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from routed.lab.generate import LabPlan

HOLD_TIME = 9  # seconds: a lab should notice a dead host quickly, as labs/tor-ebgp does


def _bird_config(
    plan: LabPlan, name: str, router_id: str, asn: int, neighbors: list[tuple[str, str, str, int]]
) -> str:
    """BIRD2 for a router of the fabric; neighbors are (protocol, our address, theirs, their AS)."""
    lines = [
        f"# BIRD2 on {name}, written by `routed lab generate`",
        f"router id {router_id};",
        "log stderr all;",
        "",
        "# only the pool's prefixes travel: the routed hosts' blocks and workloads",
        "filter workloads {",
        f"    if net ~ [ {plan.pool}+ ] then accept;",
        "    reject;",
        "}",
        "",
        "protocol device {}",
        "",
        "protocol kernel {",
        "    ipv4 { import none; export where source = RTS_BGP; };  # install what BGP learned",
        "    merge paths on;",
        "}",
        "",
        "template bgp fabric {",
        f"    local as {asn};",
        "    ipv4 { import filter workloads; export filter workloads; };",
        f"    hold time {HOLD_TIME};",
        "    connect retry time 1;",
        "    graceful restart on;  # a host restarting gracefully keeps its routes here meanwhile",
        "}",
    ]
    for protocol, ours, theirs, their_asn in neighbors:
        lines += [
            "",
            f"protocol bgp {protocol} from fabric {{",
            f"    source address {ours};",
            f"    neighbor {theirs} as {their_asn};",
            "}",
        ]
    return "\n".join(lines) + "\n"


def tor_config(plan: LabPlan, rack: int) -> str:
    from routed.lab.generate import HOST_ASN_BASE, SPINE_ASN

    neighbors = [
        (f"h{h}", str(plan.tor_link(h)), str(plan.host_address(h)), HOST_ASN_BASE + h)
        for h in plan.rack_hosts(rack)
    ]
    if plan.tors > 1:
        neighbors.append(("spine", str(plan.spine_link(rack) + 1), str(plan.spine_link(rack)), SPINE_ASN))
    router_id = plan.spine_link(rack) + 1
    return _bird_config(plan, f"tor{rack}", str(router_id), SPINE_ASN + rack, neighbors)


def spine_config(plan: LabPlan) -> str:
    from routed.lab.generate import SPINE_ASN

    neighbors = [
        (f"tor{r}", str(plan.spine_link(r)), str(plan.spine_link(r) + 1), SPINE_ASN + r)
        for r in range(1, plan.tors + 1)
    ]
    return _bird_config(plan, "spine", str(plan.spine_link(1)), SPINE_ASN, neighbors)


def _router(plan: LabPlan, name: str, addresses: list[str]) -> list[str]:
    return [
        f"    {name}:",
        "      kind: linux",
        f"      binds: [{plan.name}/{name}.conf:/etc/bird/bird.conf:ro]",
        "      env: {NODE_DAEMON: bird}",
        "      exec:",
        "        - sysctl -qw net.ipv4.ip_forward=1",
        *(
            f"        - ip addr add {address}/31 dev eth{port}"
            for port, address in enumerate(addresses, start=1)
        ),
    ]


def routers(plan: LabPlan) -> tuple[list[str], list[str]]:
    """The ToRs' and the spine's node lines, and every link of the fabric."""
    nodes: list[str] = []
    links: list[str] = []
    if plan.tors > 1:
        nodes += _router(plan, "spine", [str(plan.spine_link(r)) for r in range(1, plan.tors + 1)])
    for rack in range(1, plan.tors + 1):
        hosts = plan.rack_hosts(rack)
        addresses = [str(plan.tor_link(h)) for h in hosts]
        if plan.tors > 1:
            addresses.append(str(plan.spine_link(rack) + 1))
            links.append(f'    - endpoints: ["tor{rack}:eth{len(hosts) + 1}", "spine:eth{rack}"]')
        nodes += _router(plan, f"tor{rack}", addresses)
        links += [
            f'    - endpoints: ["tor{rack}:eth{port}", "h{h}:eth1"]' for port, h in enumerate(hosts, start=1)
        ]
    return nodes, links


def files(plan: LabPlan) -> dict[str, str]:
    """NAME/torR.conf (and NAME/spine.conf): the routers' BIRD2 configs."""
    written = {f"{plan.name}/tor{r}.conf": tor_config(plan, r) for r in range(1, plan.tors + 1)}
    if plan.tors > 1:
        written[f"{plan.name}/spine.conf"] = spine_config(plan)
    return written
