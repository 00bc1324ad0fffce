"""The reflector under test in bench.rrscale, configured alike for each daemon: AS 64512,
router id 10.0.0.1, every client listed (passive: the clients connect), route-reflector
clients, hold time 90 s, graceful restart 120 s, IPv4 and IPv6 unicast. The clients sit
behind 10.0.0.2 (one ARP entry instead of N: the neighbour table's limits are global to the
machine, not per namespace), so their next hops resolve through one static route.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address

REFLECTOR = IPv4Address("10.0.0.1")
GATEWAY = IPv4Address("10.0.0.2")  # the clients' namespace, on the reflector's link
CLIENT_NET = "10.1.0.0/16"
POOL = "10.64.0.0/10"
ASN = 64512
HOLD = 90
RESTART_TIME = 120


def routed(clients: Sequence[IPv4Address]) -> dict[str, tuple[str, str]]:
    peers = "".join(f"  - {{address: {a}, kind: client}}\n" for a in clients)
    config = (
        f"name: rr\nrouter_id: {REFLECTOR}\nasn: {ASN}\nrole: reflector\n"
        f"fabric: {{interface: eth1, address: {REFLECTOR}}}\npools: [{POOL}]\n"
        f"bgp: {{max_prefixes: null, next_hops: [{CLIENT_NET}]}}\n"
        f"peers:\n{peers}"
    )
    return {"rr.yaml": (config, "/etc/routed/routed.yaml")}


def bird(clients: Sequence[IPv4Address]) -> dict[str, tuple[str, str]]:
    head = f"""\
router id {REFLECTOR};
protocol device {{}}
protocol static {{ ipv4; route {CLIENT_NET} via {GATEWAY}; }}
template bgp clients {{
    local {REFLECTOR} as {ASN};
    rr client;
    passive on;
    hold time {HOLD};
    graceful restart on;
    graceful restart time {RESTART_TIME};
    ipv4 {{ import all; export all; }};
    ipv6 {{ import all; export all; }};
}}
"""
    protocols = "".join(
        f"protocol bgp c{i} from clients {{ neighbor {a} as {ASN}; }}\n" for i, a in enumerate(clients)
    )
    return {"rr.conf": (head + protocols, "/etc/bird/bird.conf")}


def gobgp(clients: Sequence[IPv4Address]) -> dict[str, tuple[str, str]]:
    text = f"""\
[global.config]
  as = {ASN}
  router-id = "{REFLECTOR}"
  local-address-list = ["{REFLECTOR}"]
"""
    for address in clients:
        text += f"""
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{address}"
    peer-as = {ASN}
  [neighbors.timers.config]
    hold-time = {HOLD}
  [neighbors.transport.config]
    passive-mode = true
    local-address = "{REFLECTOR}"
  [neighbors.route-reflector.config]
    route-reflector-client = true
    route-reflector-cluster-id = "{REFLECTOR}"
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = {RESTART_TIME}
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"""
    return {"rr.toml": (text, "/etc/gobgp/gobgpd.toml")}


def frr(clients: Sequence[IPv4Address]) -> dict[str, tuple[str, str]]:
    lines = [
        "frr defaults traditional",
        "hostname rr",
        "router bgp 64512",
        f" bgp router-id {REFLECTOR}",
        " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast",
        " bgp graceful-restart",
        f" bgp graceful-restart restart-time {RESTART_TIME}",
        # the Forwarding State bit, as routed, BIRD and GoBGP set it: without it the clients
        # must drop every route of the reflector when it comes back (RFC 4724 4.2)
        " bgp graceful-restart preserve-fw-state",
        " neighbor clients peer-group",
        f" neighbor clients remote-as {ASN}",
        " neighbor clients passive",
        f" neighbor clients timers {HOLD // 3} {HOLD}",
        f" neighbor clients update-source {REFLECTOR}",
    ]
    lines += [f" neighbor {a} peer-group clients" for a in clients]
    for family in ("ipv4", "ipv6"):
        lines += [
            f" address-family {family} unicast",
            "  neighbor clients activate",
            "  neighbor clients route-reflector-client",
            " exit-address-family",
        ]
    return {"rr.frr.conf": ("\n".join(lines) + "\n", "/etc/frr/frr.conf")}


CONFIGS = {"routed": routed, "bird": bird, "gobgp": gobgp, "frr": frr}
# the reflector's processes, by a piece of their command line (for CPU and memory)
PROCESSES = {
    "routed": ("routed run", "bgp.exabgp.launch"),
    "bird": ("bird ",),
    "gobgp": ("gobgpd",),
    "frr": ("/usr/lib/frr/bgpd", "/usr/lib/frr/zebra"),
}
