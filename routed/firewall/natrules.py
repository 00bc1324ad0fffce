"""Outgoing NAT in routed's table: which traffic is source-NATed, and the nft rules for it. Pure.

A packet from a pool with nat_outgoing, to a destination outside every pool, the fabric (its
subnets as the kernel has them, `bgp.next_hops`, the peers) and the pool's own exclusions, is
source-NATed as it leaves this host: masqueraded to the address of the interface it leaves by,
or SNATed to `nat_outgoing_address`. Traffic between containers, to hosts and to the
exclusions keeps its source. One rule per pool (two with a port range: TCP and UDP get the
range, ICMP and the rest keep their ids), each counted under the comment `nat <pool>`: there,
the connections (a nat chain sees only a connection's first packet); in `nat_counted`, after
it, every packet and byte of them in both directions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, collapse_addresses, ip_network

from routed.config.pools import Pool

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

NAT_CHAIN = "nat_outgoing"  # its counters: connections NATed (a nat chain sees their first packet)
COUNT_CHAIN = "nat_counted"  # its counters: every packet and byte of those, both ways
COMMENT_PREFIX = "nat "


@dataclass(frozen=True, slots=True)
class NatRule:
    source: IPNetwork  # the pool
    address: IPAddress | None = None  # None: masquerade
    ports: tuple[int, int] | None = None
    exclude: tuple[IPNetwork, ...] = ()

    @property
    def comment(self) -> str:
        return f"{COMMENT_PREFIX}{self.source}"

    @property
    def mode(self) -> str:
        return "masquerade" if self.address is None else f"snat to {self.address}"


def nat_rules(pools: Iterable[Pool]) -> tuple[NatRule, ...]:
    return tuple(
        NatRule(
            pool.cidr,
            pool.nat_outgoing_address,
            pool.nat_outgoing_ports,
            _collapsed(pool.nat_outgoing_exclude),
        )
        for pool in pools
        if pool.nats
    )


def _collapsed(networks: Iterable[IPNetwork]) -> tuple[IPNetwork, ...]:
    listed = list(networks)
    v4 = collapse_addresses(n for n in listed if isinstance(n, IPv4Network))
    v6 = collapse_addresses(n for n in listed if isinstance(n, IPv6Network))
    return (*v4, *v6)


def nat_skip(
    pools: Iterable[IPNetwork], fabric: Iterable[IPNetwork | IPAddress]
) -> tuple[frozenset[IPv4Network], frozenset[IPv6Network]]:
    """Destinations no pool's traffic is NATed to: the pools and the fabric (subnets or hosts)."""
    networks = [
        *pools,
        *(item if isinstance(item, IPv4Network | IPv6Network) else _host(item) for item in fabric),
    ]
    skip4 = collapse_addresses(n for n in networks if isinstance(n, IPv4Network))
    skip6 = collapse_addresses(n for n in networks if isinstance(n, IPv6Network))
    return frozenset(skip4), frozenset(skip6)


def _host(address: IPAddress) -> IPNetwork:
    return ip_network(f"{address}/{address.max_prefixlen}")


def _translation(rule: NatRule, ports: bool) -> str:
    span = f"{rule.ports[0]}-{rule.ports[1]}" if ports and rule.ports else ""
    if rule.address is None:
        return f"masquerade to :{span}" if span else "masquerade"
    family = "ip" if rule.address.version == 4 else "ip6"
    where = str(rule.address) if rule.address.version == 4 else f"[{rule.address}]"
    return f"snat {family} to {where}:{span}" if span else f"snat {family} to {where}"


def rule_lines(rule: NatRule) -> list[str]:
    family = "ip" if rule.source.version == 4 else "ip6"
    match = f"{family} saddr {rule.source} {family} daddr != @nat_skip{rule.source.version}"
    if rule.exclude:
        match += f" {family} daddr != {{ {', '.join(map(str, rule.exclude))} }}"
    comment = f'comment "{rule.comment}"'
    if rule.ports is None:
        return [f"{match} counter {_translation(rule, ports=False)} {comment}"]
    # a port range needs a transport protocol to apply to; everything else NATs without one
    return [
        f"{match} meta l4proto {{ tcp, udp }} counter {_translation(rule, ports=True)} {comment}",
        f"{match} counter {_translation(rule, ports=False)} {comment}",
    ]


def count_line(rule: NatRule) -> str:
    family = "ip" if rule.source.version == 4 else "ip6"
    return f'ct status snat ct original {family} saddr {rule.source} counter comment "{rule.comment}"'


def nat_chain(rules: Iterable[NatRule]) -> str:
    listed = list(rules)
    body = "".join(f"        {line}\n" for rule in listed for line in rule_lines(rule))
    counted = "".join(f"        {count_line(rule)}\n" for rule in listed)
    return (
        f"    chain {NAT_CHAIN} {{\n"
        "        type nat hook postrouting priority srcnat; policy accept;\n"
        f"{body}"
        "    }\n"
        f"    chain {COUNT_CHAIN} {{\n"
        "        type filter hook postrouting priority srcnat + 10; policy accept;\n"
        f"{counted}"
        "    }\n"
    )
