"""What a container can send (issue 25, finding 1), tried from inside one as an attacker would:
a source address that is not its own never leaves its host (IPv4: strict rp_filter and
routed's nftables table; IPv6: the table), while its own traffic flows; nothing from a workload
reaches BGP or BFD on its host; the table is put back when someone flushes it."""

from __future__ import annotations

import re

import pytest

from tests.lab import Lab, running_lab
from tests.netns import wait_until
from tests.traffic import Container, echoes, ping_from

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)


def add_address(lab: Lab, container: Container, address: str) -> None:
    """What root in a container can do: another address on its eth0."""
    node, netns = container
    extra = ["nodad"] if ":" in address else []
    lab.exec(node, "ip", "netns", "exec", netns, "ip", "addr", "add", address, "dev", "eth0", *extra)


@pytest.mark.long(40)
def test_a_container_cannot_send_with_another_source_but_its_own_traffic_flows() -> None:
    with running_lab("dual-stack") as lab:
        web1, h1_web2, h3_web1 = ("h1", "web1"), ("h1", "web2"), ("h3", "web1")
        target = "10.65.3.1"  # h3's web1
        own4, own6 = "10.65.1.1", "fd00:65:0:1::1"
        wait_until(
            lambda: ping_from(lab, *web1, "-c1", "-W1", target), 1, timeout=30, what="h1 web1 -> h3 web1"
        )

        # its own address: every echo arrives and is answered
        assert echoes(lab, web1, h3_web1, target, 10, own4) == (10, 10)
        # h2's container's address, added inside h1's web1 (root in the container can): none
        # leaves h1, nor reaches h1's other container
        add_address(lab, web1, "10.65.2.1/32")
        assert echoes(lab, web1, h3_web1, target, 10, "10.65.2.1") == (0, 0)
        assert echoes(lab, web1, h1_web2, "10.65.1.2", 5, "10.65.2.1") == (0, 0)

        # IPv6 (h1 is dual stack): its own /128 reaches web2 on the same host, a made-up one does not
        web2_v6 = "fd00:65:0:1::2"
        wait_until(lambda: ping_from(lab, *web1, "-6", "-c1", "-W1", web2_v6), 1, timeout=20, what="v6 own")
        assert echoes(lab, web1, h1_web2, web2_v6, 10, own6) == (10, 10)
        add_address(lab, web1, "fd00:65:0:1::30/128")
        assert echoes(lab, web1, h1_web2, web2_v6, 10, "fd00:65:0:1::30") == (0, 0)

        # nothing from a workload reaches BGP on its host (ExaBGP listens on the fabric address)
        connect = "import socket; socket.create_connection(('10.0.0.11', 179), timeout=2)"
        tried = lab.exec("h1", "ip", "netns", "exec", "web1", "python3", "-c", connect, check=False)
        assert tried.returncode != 0 and "timed out" in tried.stderr, tried.stderr[-300:]
        assert re.search(
            r"BGP from a workload [1-9]", lab.exec("h1", "routed", "status").stdout
        )  # SYN, retries
        # ... nor from a container on another host (its source is inside the pools)
        tried = lab.exec("h2", "ip", "netns", "exec", "web1", "python3", "-c", connect, check=False)
        assert tried.returncode != 0 and "timed out" in tried.stderr, tried.stderr[-300:]
        # while the hosts themselves still reach it (rr1 is h1's peer; h2 shows the port answers)
        reach = "import socket; socket.create_connection(('10.0.0.11', 179), timeout=2).close()"
        assert lab.exec("h2", "python3", "-c", reach, check=False).returncode == 0

        # IPv6 to a container on another host (routed carries it, issue 27): its own /128
        # arrives, another never leaves h1
        h3_v6 = "fd00:65:0:3::1"
        wait_until(
            lambda: ping_from(lab, *web1, "-6", "-c1", "-W1", "-I", own6, h3_v6),
            1,
            timeout=20,
            what="v6 h1->h3",
        )
        assert echoes(lab, web1, h3_web1, h3_v6, 10, own6) == (10, 10)
        add_address(lab, web1, "fd00:65:0:2::1/128")
        assert echoes(lab, web1, h3_web1, h3_v6, 10, "fd00:65:0:2::1") == (0, 0)

        # routed's table counted them; `nft flush ruleset` (an admin, another tool) is undone
        status = lab.exec("h1", "routed", "status", "--json").stdout
        assert '"spoofed source from a workload"' in status
        lab.exec("h1", "nft", "flush", "ruleset")
        wait_until(
            lambda: (
                "sources6" in lab.exec("h1", "nft", "list", "table", "inet", "routed", check=False).stdout
            ),
            timeout=20,
            what="routed's table restored",
        )
        assert echoes(lab, web1, h1_web2, web2_v6, 5, "fd00:65:0:1::30") == (0, 0)
        assert "event=firewall_table_restored" in lab.log("h1")
        # and the container's own traffic went on through all of it
        assert echoes(lab, web1, h3_web1, target, 5, own4) == (5, 5)
        assert echoes(lab, web1, h3_web1, h3_v6, 5, own6) == (5, 5)
