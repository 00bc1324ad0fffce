"""routed-cni invoked exactly as a runtime invokes it (environment + network config on stdin,
as `cnitool` does) against a real daemon in a test host; then podman end to end on two lab
hosts (test_podman_*)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from routed.cni.install import plugin_script
from routed.dataplane.workload import host_ifname
from tests.integration.conftest import Daemon, Host, Namespaces
from tests.netns import links, routes, sh

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

# the plugin as `routed cni install` writes it (its shebang line is a comment to -c): the relay
# to the daemon, and the full plugin in-process when the daemon cannot take the call
PLUGIN = [sys.executable, "-IS", "-c", plugin_script()]


def cni(
    host: Host,
    command: str,
    netns: str,
    conf: dict[str, Any] | bytes,
    plugin: list[str] = PLUGIN,
    **env: str,
) -> tuple[int, Any]:
    """Run a CNI plugin (routed's unless told) in the host namespace as a runtime does;
    (exit code, parsed stdout or None)."""
    full = {
        "PATH": os.environ["PATH"],
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c0ffee01",
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
        **env,
    }
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    out = subprocess.run(
        ["ip", "netns", "exec", host.netns, *plugin], input=stdin, env=full, capture_output=True, timeout=60
    )
    return out.returncode, json.loads(out.stdout) if out.stdout.strip() else None


def network(host: Host, **extra: Any) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "routed",
        "type": "routed",
        "socket": str(host.dir / "api.sock"),
        "routedConfig": str(host.config),
        **extra,
    }


def test_plugin_add_check_del_against_the_daemon(host: Host, daemon: Daemon, namespaces: Namespaces) -> None:
    container = namespaces.add()
    path = f"/run/netns/{container}"
    sh(["ip", "-n", host.netns, "link", "set", "fab0", "mtu", "4000"])  # a fabric not at 1500
    code, result = cni(host, "ADD", path, network(host))
    assert code == 0, result
    wid = "cni-c0ffee01:eth0"
    veth = host_ifname(wid)
    # both ends at the fabric interface's MTU, and the result says so
    fabric_mtu = 4000
    assert result["interfaces"][0] == {"name": veth, "mac": "ee:ee:ee:ee:ee:ee", "mtu": fabric_mtu}
    assert int(sh(["cat", "/sys/class/net/eth0/mtu"], netns=container).stdout) == fabric_mtu
    assert int(sh(["cat", f"/sys/class/net/{veth}/mtu"], netns=host.netns).stdout) == fabric_mtu
    sandbox = result["interfaces"][1]
    assert sandbox["mtu"] == fabric_mtu
    assert (sandbox["name"], sandbox["sandbox"]) == ("eth0", path)
    mac = sh(["cat", "/sys/class/net/eth0/address"], netns=container).stdout.strip()
    assert sandbox["mac"] == mac  # the container side's own MAC (podman requires one)
    (ipv4, ipv6) = result["ips"]
    assert ipv4 == {"address": "10.65.0.1/32", "gateway": "169.254.1.1", "interface": 1}
    assert ipv6["address"] == "fd00:65::1/128" and ipv6["gateway"] == "fe80::1"
    assert {"dst": "0.0.0.0/0", "gw": "169.254.1.1"} in result["routes"]
    # the kernel agrees: the veth, the /32 to it, the address inside the container
    assert veth in links(host.netns)
    assert [r["dev"] for r in routes(host.netns, "10.65.0.1")] == [veth]
    assert "10.65.0.1/32" in sh(["ip", "-4", "addr", "show", "eth0"], netns=container).stdout
    # ADD again (a runtime retrying): the same result, nothing new
    assert cni(host, "ADD", path, network(host)) == (0, result)
    # CHECK with the runtime's cached result: fine; then drift is reported
    assert cni(host, "CHECK", path, network(host, prevResult=result)) == (0, None)
    sh(["ip", "route", "del", "default"], netns=container)
    code, error = cni(host, "CHECK", path, network(host, prevResult=result))
    assert code != 0 and error["code"] == 102 and "no IPv4 default route" in error["msg"], error
    # DEL, and DEL again (already gone), and DEL without a netns (the container is gone too)
    assert cni(host, "DEL", path, network(host)) == (0, None)
    assert veth not in links(host.netns) and routes(host.netns, "10.65.0.1") == []
    assert cni(host, "DEL", path, network(host)) == (0, None)
    assert cni(host, "DEL", "", network(host)) == (0, None)
    # a DEL while the daemon is down still cleans up (from the node's own state)
    assert cni(host, "ADD", path, network(host))[0] == 0
    daemon.stop()
    assert cni(host, "DEL", path, network(host)) == (0, None)
    assert veth not in links(host.netns)


def test_plugin_bad_input_leaves_nothing(host: Host, daemon: Daemon, namespaces: Namespaces) -> None:
    container = namespaces.add()
    path = f"/run/netns/{container}"
    before = (links(host.netns), host.routed("workload", "list", "--json", "-c", str(host.config)).stdout)
    cases = [
        ({"CNI_CONTAINERID": ""}, network(host), 4, "CNI_CONTAINERID not set"),
        ({}, b"{oops", 6, "not JSON"),
        ({}, network(host, cniVersion="0.2.0"), 1, "not supported"),
        ({"CNI_NETNS": "/run/netns/rt-does-not-exist"}, network(host), 4, "does not exist"),
        ({"CNI_IFNAME": "eth0-far-too-long"}, network(host), 4, "not an interface name"),
        ({}, network(host, socket=str(host.dir / "nobody.sock")), 11, "routed is not running"),
    ]
    for env, conf, code, needle in cases:
        exit_code, error = cni(host, "ADD", env.pop("CNI_NETNS", path), conf, **env)
        assert exit_code != 0 and error["code"] == code and needle in error["msg"], (env, error)
    after = (links(host.netns), host.routed("workload", "list", "--json", "-c", str(host.config)).stdout)
    assert after == before
    # and without the daemon at all: try again later, nothing made
    daemon.stop()
    exit_code, error = cni(host, "ADD", path, network(host))
    assert exit_code != 0 and error["code"] == 11 and "start it" in error["details"]
    assert links(host.netns) == before[0]


def test_version_needs_nothing(host: Host) -> None:
    code, out = cni(host, "VERSION", "", b"")
    assert code == 0 and "1.0.0" in out["supportedVersions"]


def run_chain(host: Host, command: str, netns: str, plugins: list[dict[str, Any]]) -> Any:
    """What libcni does with a conflist: each plugin in turn (in reverse for DEL), each ADD
    given the previous plugin's result as prevResult; the last result is the runtime's."""
    previous = None
    for plugin in plugins if command == "ADD" else list(reversed(plugins)):
        conf = {"cniVersion": "1.0.0", "name": "routed", **plugin}
        if previous is not None:
            conf["prevResult"] = previous
        binary = PLUGIN if plugin["type"] == "routed" else [f"/usr/lib/cni/{plugin['type']}"]
        code, out = cni(host, command, netns, conf, binary)
        assert code == 0, (plugin["type"], command, out)
        if command == "ADD":
            previous = out
    return previous


def test_plugins_chained_after_routed(host: Host, daemon: Daemon, namespaces: Namespaces) -> None:
    """tuning, bandwidth, firewall and portmap from containernetworking-plugins take routed's
    result as their prevResult and pass it on, as in a conflist."""
    container = namespaces.add()
    path = f"/run/netns/{container}"
    plugins = [
        network(host),
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.accept_redirects": "0"}},
        {"type": "bandwidth", "ingressRate": 10_000_000, "ingressBurst": 100_000},
        {"type": "firewall", "backend": "iptables"},
        {
            "type": "portmap",
            "capabilities": {"portMappings": True},
            "runtimeConfig": {"portMappings": [{"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}]},
        },
    ]
    final = run_chain(host, "ADD", path, plugins)
    assert [ip["address"] for ip in final["ips"]] == ["10.65.0.1/32", "fd00:65::1/128"]
    assert sh(["sysctl", "-n", "net.ipv4.conf.eth0.accept_redirects"], netns=container).stdout.strip() == "0"
    assert "8081" in sh(["iptables", "-t", "nat", "-S"], netns=host.netns).stdout
    run_chain(host, "DEL", path, plugins)
    assert host_ifname("cni-c0ffee01:eth0") not in links(host.netns)
    assert "8081" not in sh(["iptables", "-t", "nat", "-S"], netns=host.netns).stdout


def test_gc_of_one_network_leaves_another_networks_containers(
    host: Host, daemon: Daemon, namespaces: Namespaces
) -> None:
    """Issue 25, finding 10: podman's and containerd's networks (or two routed networks) on one
    host: the GC of one, which lists only its own attachments, removes only its own stale ones."""
    ours, theirs, stale = (namespaces.add() for _ in range(3))
    for netns, container, name in (
        (ours, "c0ffee01", "routed"),
        (stale, "c0ffee02", "routed"),
        (theirs, "beef0001", "routed-ctr"),
    ):
        code, result = cni(
            host, "ADD", f"/run/netns/{netns}", network(host, name=name), CNI_CONTAINERID=container
        )
        assert code == 0, result
    listed = json.loads(host.routed("workload", "list", "--json", "-c", str(host.config)).stdout)
    assert {w["id"]: w["network"] for w in listed} == {
        "cni-c0ffee01:eth0": "routed",
        "cni-c0ffee02:eth0": "routed",
        "cni-beef0001:eth0": "routed-ctr",
    }
    valid = [{"containerID": "c0ffee01", "ifname": "eth0"}]
    gc = network(host, cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid})
    assert cni(host, "GC", "", gc) == (0, None)
    left = json.loads(host.routed("workload", "list", "--json", "-c", str(host.config)).stdout)
    assert sorted(w["id"] for w in left) == ["cni-beef0001:eth0", "cni-c0ffee01:eth0"]
    assert host_ifname("cni-beef0001:eth0") in links(host.netns)
    assert host_ifname("cni-c0ffee02:eth0") not in links(host.netns)


def test_a_hundred_adds_at_once_all_succeed_with_their_own_addresses(
    host: Host, daemon: Daemon, namespaces: Namespaces
) -> None:
    """As a node starting 100 pods at once: every ADD answered, no address twice, each in its
    own container; then every DEL. The p95 is printed (docs/benchmarks.md has the figure)."""
    containers = [namespaces.add() for _ in range(100)]

    def add(index: int) -> tuple[float, int, Any]:
        started = time.monotonic()
        code, result = cni(
            host, "ADD", f"/run/netns/{containers[index]}", network(host), CNI_CONTAINERID=f"par{index:03d}"
        )
        return (time.monotonic() - started) * 1000, code, result

    with ThreadPoolExecutor(100) as pool:
        done = list(pool.map(add, range(100)))
    assert [code for _, code, _ in done] == [0] * 100, [r for _, c, r in done if c]
    addresses = [ip["address"] for _, _, result in done for ip in result["ips"]]
    assert len(addresses) == 200 and len(set(addresses)) == 200
    for index, (_, _, result) in enumerate(done):
        mine = sh(["ip", "-o", "addr", "show", "eth0"], netns=containers[index]).stdout
        assert all(ip["address"] in mine for ip in result["ips"]), (index, mine)
    took = sorted(ms for ms, _, _ in done)
    print(f"100 parallel ADDs: p50 {took[49]:.0f} ms, p95 {took[94]:.0f} ms, max {took[-1]:.0f} ms")

    def delete(index: int) -> int:
        return cni(
            host, "DEL", f"/run/netns/{containers[index]}", network(host), CNI_CONTAINERID=f"par{index:03d}"
        )[0]

    with ThreadPoolExecutor(100) as pool:
        assert list(pool.map(delete, range(100))) == [0] * 100
    assert not [link for link in links(host.netns) if link.startswith("rt") and link != "rt"]
