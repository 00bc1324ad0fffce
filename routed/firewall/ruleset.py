"""The nftables table routed wants, from the workloads it has attached. Pure.

One table of routed's own (`inet routed`), replaced or edited as a whole and never another:
- `antispoof` (prerouting, priority raw, before conntrack): a packet that arrives on a
  workload's veth must carry one of that workload's own addresses as its source. IPv6's
  unspecified and link-local sources pass (DAD, neighbour and router discovery, MLD): the
  kernel never forwards them off the link, and what they can reach on the host is the next
  chain's business. IPv4 is also held by strict rp_filter on each veth; the two agree.
- `input`: nothing from a workload reaches BGP (TCP 179) or BFD (UDP 3784, 4784) on the host:
  not from a veth of this host's, nor from a source inside the pools (a container elsewhere,
  whose own host keeps it from using any other source). The control plane hears hosts only.
- `nat_outgoing` (postrouting, srcnat): traffic from pools with nat_outgoing to beyond the
  fabric leaves with the host's address (routed/firewall/natrules.py).
Everything else (forwarding between workloads, to the fabric) is left to other tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, collapse_addresses

from routed.firewall.natrules import NatRule, nat_chain

TABLE = "routed"
FAMILY = "inet"
BGP_PORT = 179
BFD_PORTS = (3784, 4784)  # single hop control, echo


@dataclass(frozen=True, slots=True)
class WorkloadSources:
    ifname: str  # the host side of its veth
    ips: tuple[IPv4Address | IPv6Address, ...]


@dataclass(frozen=True, slots=True)
class Desired:
    """The table's contents: its NAT rules (the others are fixed) and its sets' elements."""

    interfaces: frozenset[str]
    sources4: frozenset[tuple[str, IPv4Address]]
    sources6: frozenset[tuple[str, IPv6Address]]
    pools4: frozenset[IPv4Network] = frozenset()
    pools6: frozenset[IPv6Network] = frozenset()
    nat_skip4: frozenset[IPv4Network] = frozenset()
    nat_skip6: frozenset[IPv6Network] = frozenset()
    nat: tuple[NatRule, ...] = ()

    def elements(self) -> Desired:
        """The set elements alone (what `elements_of` reads back from the kernel)."""
        return Desired(
            self.interfaces,
            self.sources4,
            self.sources6,
            self.pools4,
            self.pools6,
            self.nat_skip4,
            self.nat_skip6,
        )


EMPTY = Desired(frozenset(), frozenset(), frozenset())


def desired(
    workloads: Iterable[WorkloadSources],
    pools: Iterable[IPv4Network | IPv6Network] = (),
    nat: tuple[NatRule, ...] = (),
    nat_skip: tuple[frozenset[IPv4Network], frozenset[IPv6Network]] = (frozenset(), frozenset()),
) -> Desired:
    listed = list(pools)
    pools4 = frozenset(collapse_addresses(p for p in listed if isinstance(p, IPv4Network)))
    pools6 = frozenset(collapse_addresses(p for p in listed if isinstance(p, IPv6Network)))
    interfaces, sources4, sources6 = set(), set(), set()
    for workload in workloads:
        interfaces.add(workload.ifname)
        for ip in workload.ips:
            if isinstance(ip, IPv4Address):
                sources4.add((workload.ifname, ip))
            else:
                sources6.add((workload.ifname, ip))
    return Desired(
        frozenset(interfaces), frozenset(sources4), frozenset(sources6), pools4, pools6, *nat_skip, nat
    )


_BFD = ", ".join(map(str, BFD_PORTS))
SKELETON = f"""\
table {FAMILY} {TABLE} {{
    comment "routed's own: anti-spoofing and NAT for its workloads (routed/firewall); edits are undone"
    set workload_interfaces {{ type ifname; }}
    set sources4 {{ type ifname . ipv4_addr; }}
    set sources6 {{ type ifname . ipv6_addr; }}
    set pools4 {{ type ipv4_addr; flags interval; }}
    set pools6 {{ type ipv6_addr; flags interval; }}
    set nat_skip4 {{ type ipv4_addr; flags interval; }}
    set nat_skip6 {{ type ipv6_addr; flags interval; }}
    chain antispoof {{
        type filter hook prerouting priority raw; policy accept;
        iifname != @workload_interfaces accept
        iifname . ip saddr @sources4 accept
        iifname . ip6 saddr @sources6 accept
        ip6 saddr {{ ::, fe80::/10 }} accept
        meta nfproto {{ ipv4, ipv6 }} counter drop comment "spoofed source from a workload"
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname @workload_interfaces tcp dport {BGP_PORT} counter drop comment "BGP from a workload"
        ip saddr @pools4 tcp dport {BGP_PORT} counter drop comment "BGP from a workload"
        ip6 saddr @pools6 tcp dport {BGP_PORT} counter drop comment "BGP from a workload"
        iifname @workload_interfaces udp dport {{ {_BFD} }} counter drop comment "BFD from a workload"
        ip saddr @pools4 udp dport {{ {_BFD} }} counter drop comment "BFD from a workload"
        ip6 saddr @pools6 udp dport {{ {_BFD} }} counter drop comment "BFD from a workload"
    }}
"""


def skeleton(nat: Iterable[NatRule]) -> str:
    """The table's chains and empty sets, as one nft statement."""
    return SKELETON + nat_chain(nat) + "}\n"


def _elements(items: Iterable[str]) -> str:
    return ", ".join(sorted(items))


def element_text(want: Desired) -> dict[str, list[str]]:
    """Each set's elements as nft writes them."""
    return {
        "workload_interfaces": sorted(f'"{name}"' for name in want.interfaces),
        "sources4": sorted(f'"{name}" . {ip}' for name, ip in want.sources4),
        "sources6": sorted(f'"{name}" . {ip}' for name, ip in want.sources6),
        "pools4": sorted(str(pool) for pool in want.pools4),
        "pools6": sorted(str(pool) for pool in want.pools6),
        "nat_skip4": sorted(str(net) for net in want.nat_skip4),
        "nat_skip6": sorted(str(net) for net in want.nat_skip6),
    }


def replace_script(want: Desired) -> str:
    """One transaction: the table made anew (an empty one first, so the delete never fails)."""
    lines = [f"table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}", skeleton(want.nat)]
    for name, elements in element_text(want).items():
        if elements:
            lines.append(f"add element {FAMILY} {TABLE} {name} {{ {', '.join(elements)} }}")
    return "\n".join(lines) + "\n"


def edit_script(want: Desired, have: Desired) -> str:
    """One transaction: only the set elements that differ (rules, NAT's too, are not edited:
    a change of them takes replace_script)."""
    lines = []
    wanted, held = element_text(want), element_text(have)
    for name in wanted:
        gone = sorted(set(held[name]) - set(wanted[name]))
        new = sorted(set(wanted[name]) - set(held[name]))
        if gone:
            lines.append(f"delete element {FAMILY} {TABLE} {name} {{ {', '.join(gone)} }}")
        if new:
            lines.append(f"add element {FAMILY} {TABLE} {name} {{ {', '.join(new)} }}")
    return "\n".join(lines) + ("\n" if lines else "")


def delete_script() -> str:
    return f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"
