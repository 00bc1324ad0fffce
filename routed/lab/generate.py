"""`routed lab generate`: a containerlab topology of N hosts behind R route reflectors on one L2
fabric, with each node's routed config, for trying routed at a size nobody writes by hand.

Addresses: the fabric is 10.0.0.0/16 (reflectors 10.0.0.1..R, hosts from 10.0.1.1 on, 250 to a
/24); each host owns the next block of the pool (ipam: static) and starts W workloads in it.
Reflectors of a pair (or more) share a cluster id and peer with each other as non-clients,
and accept their clients from the fabric's range (`peers: - {range: ..., kind: client}`), or,
with `clients="list"`, list every host by address.

With ToRs (`tors=K`, no reflectors) the fabric is routed instead, as in labs/tor-ebgp: the
hosts are split into K racks, each host on a /31 to its rack's top-of-rack router (BIRD2, AS
65000+r) and peering eBGP with it from its own private AS (4200000000+h), the ToRs under one
BIRD2 spine (AS 65000) when there is more than one. Every route a host learns is via its ToR.
Pure: returns the files' texts; the CLI writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from routed.lab import racks

FABRIC = IPv4Network("10.0.0.0/16")
CLUSTER_ID = IPv4Address("10.0.0.254")
HOSTS_PER_SUBNET = 250
MAX_BRIDGE_PORTS = 1024  # the Linux bridge's limit (BR_MAX_PORTS)
DEFAULT_POOL = IPv4Network("10.65.0.0/16")
RACK_LINKS = IPv4Network("10.1.0.0/16")  # a /31 per host: its ToR's end even, the host's odd
SPINE_LINKS = IPv4Network("10.0.255.0/24")  # a /31 per ToR: the spine's end even, the ToR's odd
SPINE_ASN = 65000  # ToR r is AS 65000 + r
HOST_ASN_BASE = 4200000000  # host h is AS 4200000000 + h (RFC 6996, four octets)
MAX_TORS = 100


class GenerateError(ValueError):
    """The asked-for lab cannot be made; the message says which number to change."""


@dataclass(frozen=True, slots=True)
class LabPlan:
    name: str
    hosts: int
    reflectors: int = 1
    workloads: int = 1
    pool: IPv4Network = DEFAULT_POOL
    block_size: int = 26
    asn: int = 64512
    clients: str = "range"  # how reflectors know their clients: "range" or "list"
    tors: int = 0  # racks, each behind a ToR router the hosts peer eBGP with (no reflectors then)

    def check(self) -> None:
        if self.clients not in ("range", "list"):
            raise GenerateError(f"clients {self.clients!r}: use range or list")
        if self.tors and self.reflectors:
            raise GenerateError(
                f"{self.tors} ToRs and {self.reflectors} reflectors: with ToRs the hosts peer eBGP with "
                "their rack's ToR; give 0 reflectors (--reflectors 0)"
            )
        if not 0 <= self.tors <= min(MAX_TORS, self.hosts):
            raise GenerateError(f"{self.tors} ToRs: give 0-{MAX_TORS}, and no more than there are hosts")
        if self.hosts < 1 or not (self.tors or 1 <= self.reflectors <= 9) or self.workloads < 0:
            raise GenerateError("need at least 1 host, 1-9 reflectors and 0 or more workloads per host")
        if self.hosts + self.reflectors > MAX_BRIDGE_PORTS - 1:
            raise GenerateError(
                f"{self.hosts + self.reflectors} nodes: one L2 fabric takes at most {MAX_BRIDGE_PORTS - 1}"
            )
        if self.hosts > HOSTS_PER_SUBNET * 250:
            raise GenerateError(f"at most {HOSTS_PER_SUBNET * 250} hosts fit the fabric {FABRIC}")
        if not self.pool.prefixlen <= self.block_size <= 30:
            raise GenerateError(
                f"block size /{self.block_size} must be within the pool {self.pool} and /30 at most"
            )
        blocks = 2 ** (self.block_size - self.pool.prefixlen)
        if self.hosts > blocks:
            raise GenerateError(
                f"the pool {self.pool} has {blocks} blocks of /{self.block_size}, not {self.hosts}"
            )
        if self.workloads > 2 ** (32 - self.block_size) - 2:
            raise GenerateError(f"{self.workloads} workloads do not fit a /{self.block_size} block")

    def reflector_address(self, index: int) -> IPv4Address:
        return FABRIC.network_address + index

    def host_address(self, index: int) -> IPv4Address:
        if self.tors:
            return self.tor_link(index) + 1
        subnet, host = divmod(index - 1, HOSTS_PER_SUBNET)
        return FABRIC.network_address + (subnet + 1) * 256 + host + 1

    def rack(self, index: int) -> int:
        """The rack (1..tors) of host `index`: the hosts split into contiguous, even racks."""
        return (index - 1) * self.tors // self.hosts + 1

    def rack_hosts(self, rack: int) -> list[int]:
        return [h for h in range(1, self.hosts + 1) if self.rack(h) == rack]

    def tor_link(self, index: int) -> IPv4Address:
        """The ToR's end of host `index`'s /31."""
        return RACK_LINKS.network_address + 2 * (index - 1)

    def spine_link(self, rack: int) -> IPv4Address:
        """The spine's end of ToR `rack`'s /31."""
        return SPINE_LINKS.network_address + 2 * (rack - 1)

    def block(self, index: int) -> IPv4Network:
        size = 2 ** (32 - self.block_size)
        return IPv4Network((int(self.pool.network_address) + (index - 1) * size, self.block_size))


def _identity(plan: LabPlan, name: str, address: IPv4Address, asn: int | None = None) -> list[str]:
    """The lines every node's config starts with: who it is, where it peers from, the pool."""
    return [
        f"# routed config of {name}, written by `routed lab generate`",
        f"name: {name}",
        f"router_id: {address}",
        f"asn: {asn or plan.asn}",
        f"fabric: {{interface: eth1, address: {address}}}",
        f"pools: [{plan.pool}]",
    ]


def _reflector_config(plan: LabPlan, index: int) -> str:
    lines = [*_identity(plan, f"rr{index}", plan.reflector_address(index)), "role: reflector"]
    if plan.reflectors > 1:
        lines.append(f"cluster_id: {CLUSTER_ID}")
    lines.append("peers:")
    # the other reflectors listed by address: a listed peer inside a range keeps its own kind
    lines += [
        f"  - {{address: {plan.reflector_address(r)}, kind: nonclient}}"
        for r in range(1, plan.reflectors + 1)
        if r != index
    ]
    if plan.clients == "range":
        lines.append(f"  - {{range: {FABRIC}, kind: client}}")
    else:
        lines += [f"  - {{address: {plan.host_address(h)}, kind: client}}" for h in range(1, plan.hosts + 1)]
    return "\n".join(lines) + "\n"


def _host_config(plan: LabPlan, index: int) -> str:
    if plan.tors:
        rack = plan.rack(index)
        identity = _identity(plan, f"h{index}", plan.host_address(index), HOST_ASN_BASE + index)
        tor = f"address: {plan.tor_link(index)}, kind: ebgp, asn: {SPINE_ASN + rack}, description: tor{rack}"
        peers = [f"  - {{{tor}}}"]
    else:
        identity = _identity(plan, f"h{index}", plan.host_address(index))
        peers = [
            f"  - {{address: {plan.reflector_address(r)}, kind: reflector}}"
            for r in range(1, plan.reflectors + 1)
        ]
    lines = [
        *identity,
        "peers:",
        *peers,
        f"ipam: {{mode: static, block_size: {plan.block_size}, blocks: [{plan.block(index)}]}}",
    ]
    return "\n".join(lines) + "\n"


def _node(name: str, plan: LabPlan, address: IPv4Address, workloads: int) -> list[str]:
    lines = [
        f"    {name}:",
        "      kind: linux",
        f"      binds: [{plan.name}/{name}.yaml:/etc/routed/routed.yaml:ro]",
        "      exec:",
        f"        - ip addr add {address}/{31 if plan.tors else FABRIC.prefixlen} dev eth1",
    ]
    for w in range(1, workloads + 1):
        lines += [f"        - ip netns add w{w}", f"        - routed workload add {name}-w{w} --netns w{w}"]
    return lines


def _header(plan: LabPlan, *comment: str) -> list[str]:
    """A topology's opening lines: its comment, name, the node kind's image and label."""
    return [
        *comment,
        f"name: {plan.name}",
        "",
        "topology:",
        "  kinds:",
        "    linux:",
        "      image: routed:latest",
        f"      labels: {{lab: routed-{plan.name}}}",
        "  nodes:",
    ]


def _racks_topology(plan: LabPlan) -> str:
    nodes, links = racks.routers(plan)
    lines = _header(
        plan,
        f"# {plan.name}: {plan.hosts} hosts in {plan.tors} rack(s), each host on a /31 to its rack's ToR "
        f"(BIRD2, eBGP){', the ToRs under a spine' if plan.tors > 1 else ''},",
        f"# {plan.workloads} workload(s) per host, each host one /{plan.block_size} block of {plan.pool}. "
        "Written by `routed lab generate`.",
    )
    lines += nodes
    for h in range(1, plan.hosts + 1):
        lines += _node(f"h{h}", plan, plan.host_address(h), plan.workloads)
    lines += ["  links:", *links]
    return "\n".join(lines) + "\n"


def topology(plan: LabPlan) -> str:
    if plan.tors:
        return _racks_topology(plan)
    names = [f"rr{r}" for r in range(1, plan.reflectors + 1)] + [f"h{h}" for h in range(1, plan.hosts + 1)]
    lines = _header(
        plan,
        f"# {plan.name}: {plan.reflectors} route reflector(s) and {plan.hosts} hosts on one L2 fabric "
        f"({FABRIC}), {plan.workloads} workload(s) per host,",
        f"# each host one /{plan.block_size} block of {plan.pool}. Written by `routed lab generate`.",
    )
    lines += [
        "    sw:",
        "      kind: linux",
        "      exec:",
        "        - ip link add br0 type bridge",
        "        - ip link set br0 up",
        *(f"        - ip link set eth{port} master br0" for port in range(1, len(names) + 1)),
    ]
    for r in range(1, plan.reflectors + 1):
        lines += _node(f"rr{r}", plan, plan.reflector_address(r), 0)
    for h in range(1, plan.hosts + 1):
        lines += _node(f"h{h}", plan, plan.host_address(h), plan.workloads)
    lines.append("  links:")
    lines += [f'    - endpoints: ["sw:eth{port}", "{name}:eth1"]' for port, name in enumerate(names, start=1)]
    return "\n".join(lines) + "\n"


def generate(plan: LabPlan) -> dict[str, str]:
    """{relative path: text}: NAME.clab.yml and NAME/<node>.yaml for every node."""
    plan.check()
    files = {f"{plan.name}.clab.yml": topology(plan)}
    for r in range(1, plan.reflectors + 1):
        files[f"{plan.name}/rr{r}.yaml"] = _reflector_config(plan, r)
    for h in range(1, plan.hosts + 1):
        files[f"{plan.name}/h{h}.yaml"] = _host_config(plan, h)
    files.update(racks.files(plan))
    return files
