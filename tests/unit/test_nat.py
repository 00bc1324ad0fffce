"""Outgoing NAT and MTU as config and as nft text (issue 28). Pure: the lab test
(tests/integration/test_nat.py) runs them in the kernel."""

from __future__ import annotations

import textwrap
from ipaddress import ip_address, ip_network

import pytest

from routed.cli.render import reload_text
from routed.config import ConfigError, parse_config
from routed.firewall.natrules import NatRule, nat_chain, nat_rules, nat_skip, rule_lines
from routed.firewall.ruleset import desired, edit_script, replace_script
from routed.views import mtu_text, nat_text

HEAD = """\
name: h1
router_id: 10.0.0.11
asn: 64512
fabric: {interface: eth1, address: 10.0.0.11, address6: "fd00::11"}
peers:
  - {address: 10.0.0.1, kind: reflector}
  - {address: "fd00::1", kind: reflector}
"""


def config(pools: str, extra: str = "") -> object:
    return parse_config(HEAD + textwrap.dedent(pools) + extra, "h1.yaml")


def problems(pools: str, extra: str = "") -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        config(pools, extra)
    return [(p.line, p.field, p.message) for p in info.value.problems]


def test_bare_cidrs_and_mappings_mix_and_ipv4_nats_by_default_ipv6_does_not() -> None:
    cfg = config(
        """\
        pools:
          - 10.65.0.0/16
          - "fd00:65::/48"
          - {cidr: 10.66.0.0/16, nat_outgoing: false}
          - {cidr: "fd00:66::/48", nat_outgoing: true, nat_outgoing_ports: "2000:2999"}
        """
    )
    assert [p.nats for p in cfg.pools] == [True, False, False, True]  # type: ignore[attr-defined]
    assert cfg.pool_networks[1] == ip_network("fd00:65::/48")  # type: ignore[attr-defined]
    rules = nat_rules(cfg.pools)  # type: ignore[attr-defined]
    assert [(str(r.source), r.ports) for r in rules] == [
        ("10.65.0.0/16", None),
        ("fd00:66::/48", (2000, 2999)),
    ]


@pytest.mark.parametrize(
    ("entry", "field", "needle"),
    [
        (
            "{cidr: 10.65.0.0/16, nat_outgoing: false, nat_outgoing_address: 10.0.0.11}",
            "pools[0]",
            "nat_outgoing is false",
        ),
        ('{cidr: "fd00:65::/48", nat_outgoing_address: "fd00::11"}', "pools[0]", "off by default for IPv6"),
        (
            '{cidr: 10.65.0.0/16, nat_outgoing_address: "fd00::11"}',
            "pools[0]",
            "give an address of the pool's family",
        ),
        ("{cidr: 10.65.0.0/16, nat_outgoing_address: 10.65.0.9}", "pools[0]", "inside the pool"),
        ("{cidr: 10.65.0.0/16, nat_outgoing_ports: 3000-2000}", "pools[0]", "runs backwards"),
        (
            "{cidr: 10.65.0.0/16, nat_outgoing_ports: 1-70000}",
            "pools[0].nat_outgoing_ports[1]",
            "less than or equal",
        ),
        ("{cidr: 10.65.0.0/16, nat_outgoing_ports: lots}", "pools[0].nat_outgoing_ports", "not a port range"),
        ('{cidr: 10.65.0.0/16, nat_outgoing_exclude: ["fd00:1::/64"]}', "pools[0]", "list it under a pool"),
        ("{cidr: 10.65.0.0/16, nat_outgoing: maybe}", "pools[0].nat_outgoing", "boolean"),
        ("{cidr: 10.65.0.1/16}", "pools[0].cidr", "did you mean 10.65.0.0/16"),
        ("{cidr: 10.65.0.0/16, nat: true}", "pools[0].nat", "unknown field"),
    ],
)
def test_bad_pool_options_name_the_entry_and_say_what_to_do(entry: str, field: str, needle: str) -> None:
    found = problems(f"pools:\n  - {entry}\n")
    assert any(f == field and needle in m for _, f, m in found), found
    assert all(line == 9 for line, f, _ in found if f.startswith("pools[0]")), found


def test_a_nat_address_inside_another_pool_is_refused() -> None:
    found = problems("pools:\n  - {cidr: 10.65.0.0/16, nat_outgoing_address: 10.66.0.1}\n  - 10.66.0.0/16\n")
    assert [(f, "inside a pool" in m) for _, f, m in found] == [("pools[0].nat_outgoing_address", True)]


def test_mtu_is_bounded() -> None:
    assert config("pools: [10.65.0.0/16]\n", "mtu: 9000\n").mtu == 9000  # type: ignore[attr-defined]
    found = problems("pools: [10.65.0.0/16]\n", "mtu: 1000\n")
    assert [(f, "greater than or equal to 1280" in m) for _, f, m in found] == [("mtu", True)]


def test_rules_masquerade_snat_ports_and_exclusions() -> None:
    pool = ip_network("10.65.0.0/16")
    assert rule_lines(NatRule(pool)) == [
        'ip saddr 10.65.0.0/16 ip daddr != @nat_skip4 counter masquerade comment "nat 10.65.0.0/16"'
    ]
    fixed = NatRule(pool, ip_address("10.0.0.11"), (20000, 20999), (ip_network("192.0.2.0/24"),))
    assert rule_lines(fixed) == [
        "ip saddr 10.65.0.0/16 ip daddr != @nat_skip4 ip daddr != { 192.0.2.0/24 } meta l4proto { tcp, udp }"
        ' counter snat ip to 10.0.0.11:20000-20999 comment "nat 10.65.0.0/16"',
        "ip saddr 10.65.0.0/16 ip daddr != @nat_skip4 ip daddr != { 192.0.2.0/24 }"
        ' counter snat ip to 10.0.0.11 comment "nat 10.65.0.0/16"',
    ]
    six = NatRule(ip_network("fd00:65::/48"), ip_address("fd00::11"), (1000, 1999))
    assert "snat ip6 to [fd00::11]:1000-1999" in rule_lines(six)[0]
    assert rule_lines(NatRule(ip_network("fd00:65::/48"), ports=(5, 6)))[0].endswith(
        'masquerade to :5-6 comment "nat fd00:65::/48"'
    )
    chain = nat_chain([NatRule(pool)])
    assert "type nat hook postrouting priority srcnat" in chain
    assert 'ct status snat ct original ip saddr 10.65.0.0/16 counter comment "nat 10.65.0.0/16"' in chain


def test_no_nat_to_the_pools_or_the_fabric_collapsed_by_family() -> None:
    pools = [ip_network("10.65.0.0/16"), ip_network("fd00:65::/48")]
    skip4, skip6 = nat_skip(pools, [ip_network("10.0.0.0/24"), ip_address("10.0.0.1"), ip_address("fd00::1")])
    assert sorted(map(str, skip4)) == ["10.0.0.0/24", "10.65.0.0/16"]
    assert set(map(str, skip6)) == {"fd00::1/128", "fd00:65::/48"}


def test_a_changed_nat_rule_remakes_the_table_a_changed_skip_set_only_edits_it() -> None:
    pools = [ip_network("10.65.0.0/16")]
    before = desired([], pools, (NatRule(pools[0]),), nat_skip(pools, [ip_network("10.0.0.0/24")]))
    after = desired([], pools, (NatRule(pools[0]),), nat_skip(pools, [ip_network("10.0.1.0/24")]))
    assert edit_script(after, before) == (
        "delete element inet routed nat_skip4 { 10.0.0.0/24 }\nadd element inet routed nat_skip4 { 10.0.1.0/24 }\n"
    )
    assert "masquerade" in replace_script(after) and "masquerade" not in edit_script(after, before)
    assert before.nat != desired([], pools).nat  # the service remakes the table on such a change


def test_status_lines() -> None:
    pools = [
        {
            "pool": "10.65.0.0/16",
            "nat_outgoing": True,
            "mode": "snat to 10.0.0.11",
            "ports": "2000-2999",
            "exclude": ["192.0.2.0/24"],
            "connections": 2,
            "packets": 12,
            "bytes": 1008,
        },
        {"pool": "fd00:65::/48", "nat_outgoing": False},
    ]
    assert nat_text(pools) == (
        "nat outgoing: 10.65.0.0/16 snat to 10.0.0.11 ports 2000-2999 except to 192.0.2.0/24 "
        "(2 connections, 12 packets, 1008 bytes NATed); fd00:65::/48 off"
    )
    assert mtu_text({"workloads": 9000, "source": "fabric eth1", "fabric": 9000}) == (
        "mtu: 9000 for workload veths (fabric eth1)"
    )
    assert mtu_text({"workloads": 1400, "source": "mtu:", "fabric": 9000}) == (
        "mtu: 1400 for workload veths (mtu:; the fabric's is 9000)"
    )
    result = {"changed": [], "kernel": ["fabric eth1 mtu 9000 -> 1400", "2 workload veths to mtu 1400"]}
    assert reload_text(result) == (
        "reload: no changes in the file\n  from the kernel: fabric eth1 mtu 9000 -> 1400\n"
        "  from the kernel: 2 workload veths to mtu 1400"
    )
