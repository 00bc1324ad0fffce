"""routed's nftables table as data (routed/firewall/ruleset.py, the JSON side of nft.py). Pure."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from routed.firewall import nft
from routed.firewall.ruleset import EMPTY, WorkloadSources, desired, edit_script, replace_script

WEB1 = WorkloadSources("rt0000000000a", (ip_address("10.65.1.1"), ip_address("fd00:65::1")))
WEB2 = WorkloadSources("rt0000000000b", (ip_address("10.65.1.2"),))
POOLS = [ip_network("10.65.0.0/16"), ip_network("fd00:65::/48"), ip_network("10.70.0.1/32")]


def test_each_workload_may_send_from_its_own_addresses_on_its_own_veth() -> None:
    want = desired([WEB1, WEB2], POOLS)
    assert want.interfaces == {"rt0000000000a", "rt0000000000b"}
    assert want.sources4 == {
        ("rt0000000000a", IPv4Address("10.65.1.1")),
        ("rt0000000000b", IPv4Address("10.65.1.2")),
    }
    assert want.sources6 == {("rt0000000000a", IPv6Address("fd00:65::1"))}
    assert want.pools4 == {ip_network("10.65.0.0/16"), ip_network("10.70.0.1/32")}


def test_the_table_is_made_in_one_transaction_and_edited_by_elements() -> None:
    script = replace_script(desired([WEB1], POOLS))
    assert script.startswith("table inet routed\ndelete table inet routed\ntable inet routed {")
    assert 'add element inet routed sources4 { "rt0000000000a" . 10.65.1.1 }' in script
    assert "add element inet routed pools6 { fd00:65::/48 }" in script
    assert "sources6" in script and "iifname . ip6 saddr @sources6 accept" in script
    edit = edit_script(desired([WEB2], POOLS), desired([WEB1], POOLS))
    assert 'delete element inet routed sources4 { "rt0000000000a" . 10.65.1.1 }' in edit
    assert 'add element inet routed sources4 { "rt0000000000b" . 10.65.1.2 }' in edit
    assert "pools4" not in edit  # unchanged sets are not touched
    assert edit_script(desired([WEB1]), desired([WEB1])) == ""
    assert "add element" not in replace_script(EMPTY)


LISTED = {
    "nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "inet", "name": "routed", "handle": 2}},
        {"set": {"name": "workload_interfaces", "handle": 3, "elem": ["rt0000000000a"]}},
        {"set": {"name": "sources4", "handle": 4, "elem": [{"concat": ["rt0000000000a", "10.65.1.1"]}]}},
        {"set": {"name": "sources6", "handle": 5, "elem": [{"concat": ["rt0000000000a", "fd00:65::1"]}]}},
        {
            "set": {
                "name": "pools4",
                "handle": 6,
                "elem": [{"prefix": {"addr": "10.65.0.0", "len": 16}}, "10.70.0.1"],
            }
        },
        {"set": {"name": "pools6", "handle": 7, "elem": [{"prefix": {"addr": "fd00:65::", "len": 48}}]}},
        {"chain": {"table": "routed", "name": "input", "handle": 2, "hook": "input", "prio": 0}},
        {
            "rule": {
                "chain": "input",
                "handle": 15,
                "comment": "BGP from a workload",
                "expr": [{"counter": {"packets": 3, "bytes": 180}}, {"drop": None}],
            }
        },
        {
            "rule": {
                "chain": "input",
                "handle": 16,
                "comment": "BGP from a workload",
                "expr": [{"counter": {"packets": 2, "bytes": 120}}, {"drop": None}],
            }
        },
    ]
}


def test_the_kernels_table_read_back() -> None:
    assert nft.elements_of(LISTED) == desired([WorkloadSources("rt0000000000a", WEB1.ips)], POOLS)
    assert nft.drop_counters(LISTED) == {"BGP from a workload": 5}  # summed over its rules
    rules = nft.rules_of(LISTED)
    assert rules[0] == {"chain": {"table": "routed", "name": "input", "hook": "input", "prio": 0}}
    # handles and counter values are not what the rules are: they change, the rules do not
    assert (
        rules[1]["rule"]["expr"] == [{"counter": None}, {"drop": None}] and "handle" not in rules[1]["rule"]
    )
