"""The netns lab runner, checked from the kernel: what `up` makes, and that `down` leaves nothing."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from bgp import procfs
from routed.lab.topology import load_topology
from tests.lab import LABS, Lab, new_lab, running_lab
from tests.netns import sh, wait_until
from tests.support.fabric import pids_in

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

STATE = Path("/run/routed-lab")


def lab_namespaces(lab: Lab) -> set[str]:
    listed = sh("ip netns list").stdout.split()
    return {name for name in listed if name.startswith(f"{lab.prefix}-{lab.name}-")}


def eth_links(netns: str) -> set[str]:
    out = json.loads(sh(["ip", "-j", "-n", netns, "link", "show"]).stdout)
    return {link["ifname"] for link in out if link["ifname"].startswith("eth")}


def processes_in(netns_names: set[str]) -> set[int]:
    inodes = {procfs.ns_inode(f"/run/netns/{n}") for n in netns_names} - {None}
    return set(procfs.in_namespaces(inodes))  # type: ignore[arg-type]


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}/ns/net").exists()}


def host_links() -> list[str]:
    return sorted(link["ifname"] for link in json.loads(sh("ip -j link show").stdout))


def assert_gone(lab: Lab, pids: set[int], links_before: list[str]) -> None:
    assert lab_namespaces(lab) == set()
    wait_until(lambda: alive(pids), set(), timeout=5, what="every lab process is gone")
    assert not (STATE / f"{lab.prefix}-{lab.name}").exists()
    assert host_links() == links_before
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"{lab.prefix}-{lab.name}" not in mounts


def test_quickstart_up_exec_down() -> None:
    links_before = host_links()
    topo = load_topology(LABS / "quickstart.clab.yml")
    with running_lab("quickstart") as lab:
        names = {n.name for n in topo.nodes}
        assert lab_namespaces(lab) == {lab.netns(n) for n in names}
        # each node has exactly the interfaces the links name
        for node in topo.nodes:
            assert eth_links(lab.netns(node.name)) == set(node.interfaces), node.name
        # exec lands in the right node, which sees its own bound config and addresses
        assert "name: h2" in lab.exec("h2", "cat", "/etc/routed/routed.yaml").stdout
        assert "10.0.0.12/24" in lab.exec("h2", "ip", "-br", "addr", "show", "eth1").stdout
        assert lab.exec("h2", "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
        # the links really join the nodes: every host reaches the reflector across the bridge node
        for host in ("h1", "h2", "h3"):
            wait_until(
                lambda h=host: lab.exec(h, "ping", "-c1", "-W1", "10.0.0.1", check=False).returncode,
                0,
                what=f"{host} pings rr1",
            )
        # the workloads from the exec lines are attached in the node's own namespaces
        workloads = json.loads(lab.exec("h1", "routed", "workload", "list", "--json").stdout)
        assert [w["ips"] for w in workloads] == [["10.65.1.1"], ["10.65.1.2"]]
        wait_until(
            lambda: (
                lab.exec(
                    "h1", "ip", "netns", "exec", "web1", "ping", "-c1", "-W1", "10.65.1.2", check=False
                ).returncode
            ),
            0,
            what="web1 pings web2 on h1",
        )
        inspected = {n["name"]: n for n in lab.inspect()}
        assert {n: s["state"] for n, s in inspected.items()} == dict.fromkeys(names, "running")
        assert inspected["rr1"]["ipv4"] == ["10.0.0.1/24 (eth1)"]
        # node files stay inside the node
        assert (
            not Path("/etc/routed/routed.yaml").exists()
            or "name: h2" not in Path("/etc/routed/routed.yaml").read_text()
        )
        pids = processes_in(lab_namespaces(lab))
        assert len(pids) >= 5 + 4  # one holder per node, routed on four of them
        wait_until(lambda: "event=started" in lab.log("h1"), what="routed started on h1")
    assert_gone(lab, pids, links_before)
    # down again: nothing to do, still fine
    assert "0 namespaces removed" in lab.cli("down").stdout


def test_tor_ebgp_runs_bird() -> None:
    with running_lab("tor-ebgp") as lab:
        wait_until(
            lambda: "Established" in lab.birdc("tor1", "show", "protocols", "spine"),
            timeout=30,
            what="tor1-spine BGP session",
        )
        pids = processes_in(lab_namespaces(lab))
    assert_gone(lab, pids, host_links())


def test_failed_up_leaves_nothing(tmp_path: Path) -> None:
    links_before = host_links()
    # a link the kernel refuses halfway through: h1 already has an `lo`
    text = (
        (LABS / "quickstart.clab.yml")
        .read_text()
        .replace('"h3:eth1"]', '"h3:eth1"]\n    - endpoints: ["h1:lo", "h2:eth9"]')
    )
    bad = LABS / f".rt-bad-{os.getpid()}.clab.yml"  # beside the real one, so its binds resolve
    bad.write_text(text)
    try:
        lab = Lab(bad, new_lab("quickstart").name)
        result = lab.cli("up", check=False)
        assert result.returncode == 1
        assert "link h1:lo <-> h2:eth9" in result.stderr
        assert_gone(lab, set(), links_before)
        assert lab.cli("down").returncode == 0
    finally:
        bad.unlink()


def test_down_after_sigkill_of_node_processes() -> None:
    links_before = host_links()
    lab = new_lab("quickstart")
    try:
        lab.cli("up")
        wait_until(lambda: "event=started" in lab.log("h1"), what="routed started on h1")
        state = json.loads((STATE / f"{lab.prefix}-{lab.name}" / "state.json").read_text())
        pids = processes_in(lab_namespaces(lab))
        # kill h1's routed and h2's namespace holder, as a crash would. Found by h1's network
        # namespace: nodes share the host's PID namespace, and `pgrep` run in h1 once found
        # the lowest-numbered `routed run` of any lab running beside this one (usually
        # another test's rr1, started first), which this test then SIGKILLed.
        (routed_pid,) = pids_in(lab.netns("h1"), "routed run")
        os.kill(routed_pid, signal.SIGKILL)
        os.kill(state["nodes"]["h2"]["pid"], signal.SIGKILL)
        wait_until(lambda: pids_in(lab.netns("h1"), "routed run"), [], what="h1's routed gone")
        inspected = {n["name"]: n["state"] for n in lab.inspect()}
        wait_until(lambda: {n["name"]: n["state"] for n in lab.inspect()}["h2"], "exited")
        assert inspected["h1"] == "running"
    finally:
        lab.cli("down", check=False)
    assert_gone(lab, pids, links_before)


def test_bad_topology_creates_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.clab.yml"
    bad.write_text(
        "name: bad\ntopology:\n  nodes:\n    a: {kind: srl, image: x}\n    b: {kind: linux, imgae: x}\n"
    )
    lab = Lab(bad, new_lab("quickstart").name)
    result = lab.cli("up", check=False)
    assert result.returncode == 2
    assert f"{bad}:4:9: topology.nodes.a.kind: kind 'srl' is not supported" in result.stderr
    assert f"{bad}:5:22: topology.nodes.b.imgae: unknown field" in result.stderr
    # only this lab's names: other tests may make namespaces meanwhile (pytest -n)
    assert f"{lab.prefix}-{lab.name}-" not in sh("ip netns list").stdout
    assert not (STATE / f"{lab.prefix}-{lab.name}").exists()


def test_up_twice_is_refused() -> None:
    with running_lab("mesh") as lab:
        second = lab.cli("up", check=False)
        assert second.returncode == 1 and "already" in second.stderr and "lab down" in second.stderr
        assert {n["state"] for n in lab.inspect()} == {"running"}


def test_a_node_whose_daemon_dies_at_start_fails_up(tmp_path: Path) -> None:
    """`lab up` does not report a node running when its entrypoint exited: it fails, naming
    the node and quoting its log, and leaves nothing behind."""
    links_before = host_links()
    bad = tmp_path / "dies.clab.yml"
    bad.write_text(
        "name: dies\ntopology:\n  nodes:\n"
        "    a: {kind: linux, image: routed:latest, env: {NODE_DAEMON: none}}\n"
        "    b: {kind: linux, image: routed:latest, env: {NODE_DAEMON: bogus}}\n"
    )
    lab = Lab(bad, new_lab("quickstart").name)
    result = lab.cli("up", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "node b: its entrypoint exited with code 2 during start-up" in result.stderr
    assert "NODE_DAEMON=bogus is not bird, frr, gobgp, routed or none" in result.stderr
    assert_gone(lab, set(), links_before)
