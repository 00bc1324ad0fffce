"""Every shipped topology parses, binds files that exist, and those files are valid."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from routed.config import ConfigError, load_config
from routed.lab.topology import load_topology, parse_topology

LABS = Path(__file__).resolve().parents[2] / "labs"
TOPOLOGIES = sorted(LABS.glob("*.clab.yml"))


def test_the_topologies_ship() -> None:
    assert {p.name for p in TOPOLOGIES} == {
        "quickstart.clab.yml",
        "dual-rr.clab.yml",
        "mesh.clab.yml",
        "tor-ebgp.clab.yml",
        "bird-interop.clab.yml",
        "bird-rr.clab.yml",
        "bird-clients.clab.yml",
        "gr-interop.clab.yml",
        "dual-stack.clab.yml",
        "v6-underlay.clab.yml",
        "v6-interop.clab.yml",
        "outside.clab.yml",
    }


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda p: p.name)
def test_topology_parses_and_binds_exist(path: Path) -> None:
    topo = load_topology(path)
    assert topo.prefix == "clab"
    assert all(n.netns == f"clab-{topo.name}-{n.name}" for n in topo.nodes)
    for node in topo.nodes:
        assert node.image == "routed:latest"
        for bind in node.binds:
            assert bind.source.exists(), bind
            if bind.target == "/etc/routed/routed.yaml":
                cfg = load_config(bind.source)
                assert cfg.name == node.name
                assert cfg.fabric.interface in node.interfaces


def bound(target: str) -> list[Path]:
    return sorted(
        {b.source for t in TOPOLOGIES for n in load_topology(t).nodes for b in n.binds if b.target == target}
    )


@pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 is installed by scripts/setup.sh")
@pytest.mark.parametrize("conf", bound("/etc/bird/bird.conf"), ids=lambda p: p.name)
def test_bird_configs_parse(conf: Path) -> None:
    result = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("vtysh") is None, reason="frr is installed by scripts/setup.sh")
@pytest.mark.parametrize("conf", bound("/etc/frr/frr.conf"), ids=lambda p: p.parent.name)
def test_frr_configs_parse(conf: Path) -> None:
    result = subprocess.run(["vtysh", "--dryrun", "-f", str(conf)], capture_output=True, text=True)
    assert result.returncode == 0 and "No such command" not in result.stderr + result.stdout, result


def test_every_daemon_config_is_checked() -> None:
    shipped = {p for p in LABS.glob("*/*") if p.suffix == ".conf"}
    assert shipped == set(bound("/etc/bird/bird.conf")) | set(bound("/etc/frr/frr.conf"))


def test_shapes() -> None:
    quick = load_topology(LABS / "quickstart.clab.yml")
    assert sorted(n.name for n in quick.nodes) == ["gw", "h1", "h2", "h3", "outside", "rr1", "sw"]
    dual = load_topology(LABS / "dual-rr.clab.yml")
    assert sorted(n.name for n in dual.nodes) == ["h1", "h2", "h3", "h4", "rr1", "rr2", "sw"]
    tor = load_topology(LABS / "tor-ebgp.clab.yml")
    assert dict(tor.node("tor1").env)["NODE_DAEMON"] == "bird"


def bad(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_topology(text, Path("/tmp/x.clab.yml"))
    return [str(p) for p in info.value.problems]


BASE = """\
name: t
topology:
  nodes:
    a: {kind: linux, image: routed:latest}
    b: {kind: linux, image: routed:latest}
  links:
    - endpoints: ["a:eth1", "b:eth1"]
"""


def test_unsupported_kind_names_key() -> None:
    found = bad(BASE.replace("a: {kind: linux", "a: {kind: srl"))
    assert found == [
        "/tmp/x.clab.yml:4:9: topology.nodes.a.kind: kind 'srl' is not supported by the "
        "netns runner; only linux"
    ]
    assert "bridges its interfaces" in bad(BASE.replace("a: {kind: linux", "a: {kind: bridge"))[0]


def test_typo_key_names_key() -> None:
    found = bad(BASE.replace("image: routed:latest}", "imgae: routed:latest}", 1))
    assert found[0].startswith("/tmp/x.clab.yml:4:22: topology.nodes.a.imgae: unknown field")
    assert bad(BASE + "mgmt: {network: x}\n")[0].startswith("/tmp/x.clab.yml:8:1: mgmt: unknown field")


def test_bad_links() -> None:
    found = bad(BASE + '    - endpoints: ["a:eth1", "c:eth1"]\n')
    assert any("links[1].endpoints[0]" in f and "already used by links[0]" in f for f in found)
    assert any("links[1].endpoints[1]" in f and "node 'c'" in f for f in found)
    assert "NODE:INTERFACE" in bad(BASE.replace('"b:eth1"', '"b"'))[0]


def test_defaults_kinds_and_node_merge() -> None:
    text = """\
name: t
prefix: ""
topology:
  defaults: {env: {A: "1"}, binds: ["x:/x"]}
  kinds:
    linux: {image: img, env: {B: "2"}, exec: [echo kind]}
  nodes:
    a: {kind: linux, env: {A: "3"}}
    b: {kind: linux, exec: [echo own]}
"""
    topo = parse_topology(text, Path("/labs/t.clab.yml"))
    a, b = topo.node("a"), topo.node("b")
    assert a.netns == "a" and topo.full_name == "t"
    assert dict(a.env) == {"A": "3", "B": "2"} and a.image == "img"
    assert a.exec == ("echo kind",) and b.exec == ("echo own",)
    assert a.binds[0].source == Path("/labs/x") and a.binds[0].target == "/x"


@pytest.mark.skipif(shutil.which("vtysh") is None or shutil.which("bird") is None, reason="scripts/setup.sh")
@pytest.mark.parametrize("node", ["rr1", "h1"])
def test_restart_bench_configs_parse(node: str, tmp_path: Path) -> None:
    """The BIRD2 and FRR configs bench.restarts generates for its quickstart-shaped labs."""
    from bench.restarts import HOSTS, bird_config, frr_config

    address = HOSTS.get(node, "10.0.0.1")
    (tmp_path / "bird.conf").write_text(bird_config(node, address))
    (tmp_path / "frr.conf").write_text(frr_config(node, address))
    bird = subprocess.run(["bird", "-p", "-c", str(tmp_path / "bird.conf")], capture_output=True, text=True)
    assert bird.returncode == 0, bird.stderr
    frr = subprocess.run(
        ["vtysh", "--dryrun", "-f", str(tmp_path / "frr.conf")], capture_output=True, text=True
    )
    assert frr.returncode == 0 and "Unknown command" not in frr.stdout + frr.stderr, frr
