"""Workloads on one host: veths, /32 and /128 routes, pings, and clean detach."""

from __future__ import annotations

import json

import pytest

from routed.dataplane.workload import host_ifname
from tests.integration.conftest import Daemon, Host, Namespaces
from tests.netns import links, routes, sh, wait_until

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)


def ping(netns: str, address: str) -> bool:
    return sh(["ping", "-c", "1", "-W", "1", address], netns=netns, check=False).returncode == 0


def our_routes(netns: str) -> list[str]:
    v4 = routes(netns, "proto", "201")
    v6 = routes(netns, "proto", "201", family="-6")
    return sorted(f"{r['dst']} dev {r['dev']}" for r in v4 + v6)


def test_attach_routes_and_pings(host: Host, daemon: Daemon, namespaces: Namespaces) -> None:
    c1, c2 = namespaces.add(), namespaces.add()
    out = host.routed("workload", "add", "web-1", "--netns", c1, "-c", str(host.config)).stdout
    assert "attached web-1: 10.65.0.1 fd00:65::1" in out
    host.routed(
        "workload",
        "add",
        "web-2",
        "--netns",
        c2,
        "--ip",
        "10.65.0.7",
        "--ip",
        "fd00:65::7",
        "-c",
        str(host.config),
    )

    veth1, veth2 = host_ifname("web-1"), host_ifname("web-2")
    assert our_routes(host.netns) == sorted(
        [
            f"10.65.0.1 dev {veth1}",
            f"10.65.0.7 dev {veth2}",
            f"fd00:65::1 dev {veth1}",
            f"fd00:65::7 dev {veth2}",
        ]
    )
    host_route = routes(host.netns, "10.65.0.1")[0]
    assert host_route["scope"] == "link" and host_route["protocol"] in ("routed", "201")
    # the workload side as the design says
    assert links(c1) == ["eth0", "lo"]
    default = routes(c1, "default")[0]
    assert default["gateway"] == "169.254.1.1" and "onlink" in default["flags"]
    assert sh(["cat", f"/proc/sys/net/ipv4/conf/{veth1}/proxy_arp"], netns=host.netns).stdout.strip() == "1"

    wait_until(lambda: ping(c1, "10.65.0.7"), what="web-1 pings web-2 over IPv4")
    wait_until(lambda: ping(c2, "fd00:65::1"), what="web-2 pings web-1 over IPv6")
    wait_until(lambda: ping(host.netns, "10.65.0.1"), what="host pings web-1")
    wait_until(lambda: ping(c1, host.address), what="web-1 pings the host")

    listed = json.loads(host.routed("workload", "list", "--json", "-c", str(host.config)).stdout)
    assert [(w["id"], w["ips"]) for w in listed] == [
        ("web-1", ["10.65.0.1", "fd00:65::1"]),
        ("web-2", ["10.65.0.7", "fd00:65::7"]),
    ]
    shown = json.loads(host.routed("routes", "--json", "-c", str(host.config)).stdout)
    assert {r["dst"] for r in shown} == {"10.65.0.1/32", "10.65.0.7/32", "fd00:65::1/128", "fd00:65::7/128"}


def test_detach_leaves_nothing(host: Host, daemon: Daemon, namespaces: Namespaces) -> None:
    c1 = namespaces.add()
    before_host, before_c1 = links(host.netns), links(c1)
    host.routed("workload", "add", "w", "--netns", c1, "-c", str(host.config))
    assert host_ifname("w") in links(host.netns)
    host.routed("workload", "del", "w", "-c", str(host.config))
    assert links(host.netns) == before_host
    assert links(c1) == before_c1
    assert our_routes(host.netns) == []
    assert routes(c1) == []
    listed = host.routed("workload", "list", "-c", str(host.config)).stdout
    assert "w " not in listed.splitlines()[-1]


def test_bad_requests_exit_codes(host: Host, daemon: Daemon, namespaces: Namespaces) -> None:
    c1 = namespaces.add()
    missing = host.routed(
        "workload", "add", "x", "--netns", "rt-does-not-exist", "-c", str(host.config), check=False
    )
    assert missing.returncode == 1 and "not found" in missing.stderr
    outside = host.routed(
        "workload", "add", "y", "--netns", c1, "--ip", "10.99.0.1", "-c", str(host.config), check=False
    )
    assert outside.returncode == 2 and "outside every pool" in outside.stderr
    unknown = host.routed("workload", "del", "nope", "-c", str(host.config), check=False)
    assert unknown.returncode == 1 and "routed workload list" in unknown.stderr
    # nothing was left behind by the failures
    assert not [link for link in links(host.netns) if link.startswith("rt")]


def test_workloads_survive_daemon_restart(host: Host, daemon: Daemon, namespaces: Namespaces) -> None:
    c1, c2 = namespaces.add(), namespaces.add()
    host.routed("workload", "add", "a", "--netns", c1, "-c", str(host.config))
    daemon.stop()
    # routes stay while the daemon is down: traffic keeps flowing
    assert our_routes(host.netns) == sorted(
        [f"10.65.0.1 dev {host_ifname('a')}", f"fd00:65::1 dev {host_ifname('a')}"]
    )
    # with no daemon the CLI acts directly
    host.routed("workload", "add", "b", "--netns", c2, "-c", str(host.config))
    assert f"10.65.0.2 dev {host_ifname('b')}" in our_routes(host.netns)
    daemon.start()
    wait_until(lambda: ping(c1, "10.65.0.2"), what="a pings b after restart")
    listed = json.loads(host.routed("workload", "list", "--json", "-c", str(host.config)).stdout)
    assert [w["id"] for w in listed] == ["a", "b"]
    # the restarted daemon adopted the routes: it changed nothing
    assert "added=" not in daemon.text().split("event=started")[-1]


def test_concurrent_adds_and_lists_all_succeed(host: Host, daemon: Daemon, namespaces: Namespaces) -> None:
    """A runtime starts several containers at once: each add, and a list in between, is
    answered (the daemon serialises them; none may wait on another's file lock and stall it)."""
    import subprocess

    from tests.integration.conftest import ROUTED

    names = [namespaces.add() for _ in range(6)]
    cfg = str(host.config)
    calls = [
        subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host.netns,
                *ROUTED,
                "workload",
                "add",
                f"w{i}",
                "--netns",
                netns,
                "-c",
                cfg,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, netns in enumerate(names)
    ]
    listing = host.routed("workload", "list", "--json", "-c", str(host.config))
    results = [c.communicate(timeout=60) for c in calls]
    assert [c.returncode for c in calls] == [0] * 6, results
    assert listing.returncode == 0
    listed = json.loads(host.routed("workload", "list", "--json", "-c", str(host.config)).stdout)
    addresses = [ip for w in listed for ip in w["ips"] if ":" not in ip]
    assert len(addresses) == 6 and len(set(addresses)) == 6
