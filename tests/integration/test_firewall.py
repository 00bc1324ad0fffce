"""routed's nftables table kept as wanted in a namespace of the test's own (routed/firewall):
made, edited by elements, made anew after `nft flush ruleset` or an edit of its rules, gone
with remove(), and another table beside it never touched."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from routed.config.pools import Pool
from routed.dataplane.workload import WorkloadSpec
from routed.firewall.service import Firewall
from routed.netns import NETNS_RUN_DIR, entered
from tests.integration.conftest import Namespaces
from tests.netns import sh

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

WEB1 = WorkloadSpec("web1", "web1", (ip_address("10.65.1.1"), ip_address("fd00:65::1")))
WEB2 = WorkloadSpec("web2", "web2", (ip_address("10.65.1.2"),))
OTHER = (
    "table inet other {\n chain c {\n  type filter hook input priority 0; policy accept;\n  counter\n }\n}"
)


def nft(netns: str, *args: str) -> str:
    return sh(["nft", *args], netns=netns).stdout


@pytest.fixture
def netns(namespaces: Namespaces) -> str:
    return namespaces.add()


def test_the_table_is_kept_as_wanted_and_nothing_else_touched(netns: str, tmp_path: Path) -> None:
    (tmp_path / "other.nft").write_text(OTHER + "\n")
    nft(netns, "-f", str(tmp_path / "other.nft"))
    other = nft(netns, "list", "table", "inet", "other")
    with entered(NETNS_RUN_DIR / netns):
        firewall = Firewall()
        firewall.set_pools([Pool(cidr="10.65.0.0/16"), Pool(cidr="fd00:65::/48")])
        firewall.set_fabric([ip_network("10.0.0.0/24")])
        firewall.set_workloads([WEB1])
        assert firewall.error is None and firewall.stats.replaced == 1
        table = nft(netns, "list", "table", "inet", "routed")
        assert f'"{WEB1.host_ifname}" . 10.65.1.1' in table and f'"{WEB1.host_ifname}" . fd00:65::1' in table
        assert "10.65.0.0/16" in table
        # IPv4 NATed by default, IPv6 not (NAT66 is asked for); the fabric is no NAT's business
        nat = nft(netns, "list", "chain", "inet", "routed", "nat_outgoing")
        assert "ip saddr 10.65.0.0/16 ip daddr != @nat_skip4" in nat and "masquerade" in nat
        assert "fd00:65::/48" not in nat
        assert "10.0.0.0/24" in nft(netns, "list", "set", "inet", "routed", "nat_skip4")
        assert [p["nat_outgoing"] for p in firewall.status()["nat"]] == [True, False]

        # NAT66 asked for at a reload, with a source address and ports: the table made anew
        firewall.set_pools(
            [
                Pool(cidr="10.65.0.0/16"),
                Pool(
                    cidr="fd00:65::/48",
                    nat_outgoing=True,
                    nat_outgoing_address="fd00::11",
                    nat_outgoing_ports="2000-2999",
                ),
            ]
        )
        assert firewall.sync() and (firewall.stats.replaced, firewall.stats.restored) == (2, 0)
        nat = nft(netns, "list", "chain", "inet", "routed", "nat_outgoing")
        assert "snat ip6 to [fd00::11]:2000-2999" in nat and "snat ip6 to fd00::11 comment" in nat

        # a workload more: its elements added, nothing made anew
        firewall.set_workloads([WEB1, WEB2])
        assert (firewall.stats.replaced, firewall.stats.edited) == (2, 1)
        assert f'"{WEB2.host_ifname}" . 10.65.1.2' in nft(netns, "list", "set", "inet", "routed", "sources4")

        # someone deletes an element: put back at the next check
        nft(
            netns,
            "delete",
            "element",
            "inet",
            "routed",
            "sources4",
            "{",
            f'"{WEB1.host_ifname}"',
            ".",
            "10.65.1.1",
            "}",
        )
        assert firewall.sync() and firewall.stats.edited == 2
        assert f'"{WEB1.host_ifname}" . 10.65.1.1' in nft(netns, "list", "set", "inet", "routed", "sources4")

        # someone adds a rule to our chain: the table is made anew
        nft(netns, "add", "rule", "inet", "routed", "antispoof", "accept")
        assert firewall.sync() and (firewall.stats.replaced, firewall.stats.restored) == (3, 1)
        assert nft(netns, "list", "chain", "inet", "routed", "antispoof").count("accept") == 5

        # nft flush ruleset takes every table: ours comes back (the other is its owner's to restore)
        nft(netns, "flush", "ruleset")
        assert firewall.sync() and (firewall.stats.replaced, firewall.stats.restored) == (4, 2)
        assert f'"{WEB2.host_ifname}" . 10.65.1.2' in nft(netns, "list", "set", "inet", "routed", "sources4")
        assert "masquerade" in nft(netns, "list", "chain", "inet", "routed", "nat_outgoing")

        # someone deletes our table: it comes back whole, NAT and all
        nft(netns, "delete", "table", "inet", "routed")
        assert firewall.sync() and (firewall.stats.replaced, firewall.stats.restored) == (5, 3)
        assert "10.0.0.0/24" in nft(netns, "list", "set", "inet", "routed", "nat_skip4")
        nft(netns, "-f", str(tmp_path / "other.nft"))

        # a workload gone; then routed leaves for good (stop --withdraw): the table goes
        firewall.set_workloads([WEB2])
        assert WEB1.host_ifname not in nft(netns, "list", "table", "inet", "routed")
        firewall.remove()
        assert "table inet routed" not in nft(netns, "list", "ruleset")
    # through it all, the other table was never touched by routed
    assert nft(netns, "list", "table", "inet", "other") == other
