"""Config validation: every class of mistake names file, line, column and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from routed.config import ConfigError, load_config, parse_config
from routed.config.derived import effective_cluster_id, resolved_peers
from routed.config.types import PeerKind, Role

EXAMPLES = sorted((Path(__file__).parents[2] / "config" / "examples").glob("*.yaml"))

GOOD = """\
name: h1
router_id: 10.0.0.11
asn: 64512
fabric: {interface: eth1, address: 10.0.0.11, address6: "fd00::11"}
pools: [10.65.0.0/16, fd00:65::/48]
peers:
  - {address: 10.0.0.1, kind: reflector}
  - {address: "fd00::1", kind: reflector, description: rr1 over IPv6}
"""


def problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "node.yaml")
    return [(p.line, p.field, p.message) for p in info.value.problems]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name


def test_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"node.yaml", "reflector.yaml", "mesh.yaml"}


def test_good_config_defaults() -> None:
    cfg = parse_config(GOOD, "node.yaml")
    assert cfg.role is Role.NODE
    assert cfg.mesh == "off"
    assert cfg.bgp.hold_time == 90
    assert cfg.api.socket == "/run/routed/routed.sock"
    assert cfg.metrics.listen == "127.0.0.1:9180"
    assert resolved_peers(cfg)[0].asn == 64512


def test_config_is_immutable() -> None:
    cfg = parse_config(GOOD, "node.yaml")
    with pytest.raises(ValueError):
        cfg.name = "other"  # type: ignore[misc]


def test_unknown_key_names_line_and_field() -> None:
    found = problems(GOOD + "peer_groups: []\n")
    assert found == [(9, "peer_groups", "unknown field; check its spelling against config/README.md")]


def test_unknown_nested_key() -> None:
    found = problems(GOOD.replace("kind: reflector}", "kind: reflector, pasword: x}"))
    assert [(line, field) for line, field, _ in found] == [(7, "peers[0].pasword")]


def test_error_string_has_file_line_column() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD.replace("asn: 64512", "asn: 0"), "conf/h1.yaml")
    assert str(info.value).startswith("conf/h1.yaml:3:1: asn: ")


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        ("10.65.0.0/16,", "10.65.0.0/33,", "pools[0]", "not a CIDR"),
        ("10.65.0.0/16,", "10.65.0.1/16,", "pools[0]", "did you mean 10.65.0.0/16"),
        ("10.65.0.0/16,", "banana,", "pools[0]", "not a CIDR"),
        ("router_id: 10.0.0.11", "router_id: fd00::1", "router_id", "IPv6"),
        ("router_id: 10.0.0.11", "router_id: 167772171", "router_id", "dotted IPv4"),
        ("asn: 64512", "asn: 4294967296", "asn", "less than or equal"),
        ("asn: 64512", "asn: 23456", "asn", "reserved"),
        ("asn: 64512", "asn: -1", "asn", "greater than or equal"),
        ("asn: 64512", "asn: '64512'", "asn", "valid integer"),
        ("kind: reflector}", "kind: friend}", "peers[0].kind", "reflector"),
        ("address: 10.0.0.11,", "address: 10.0.0.300,", "fabric.address", "not an IP address"),
    ],
)
def test_bad_values(old: str, new: str, field: str, needle: str) -> None:
    found = problems(GOOD.replace(old, new))
    assert any(f == field and needle in m for _, f, m in found), found


def test_overlapping_pools() -> None:
    found = problems(GOOD.replace("pools: [10.65.0.0/16,", "pools: [10.65.0.0/16, 10.65.128.0/17,"))
    assert found == [
        (
            5,
            "pools[1]",
            "pool 10.65.128.0/17 overlaps pools[0] 10.65.0.0/16; every address must belong "
            "to exactly one pool",
        )
    ]


def test_duplicate_peers() -> None:
    found = problems(GOOD + "  - {address: 10.0.0.1, kind: reflector}\n")
    assert [(line, field) for line, field, _ in found] == [(9, "peers[2].address")]
    assert "listed twice" in found[0][2]


def test_duplicate_yaml_key() -> None:
    found = problems(GOOD + "asn: 64513\n")
    assert found[0][:2] == (9, "asn")
    assert "duplicate key" in found[0][2] and "line 3" in found[0][2]


def test_yaml_syntax_error() -> None:
    found = problems(GOOD + "pools: [10.65.0.0/16\n")
    assert "YAML syntax error" in found[0][2]


def test_missing_required_fields() -> None:
    found = problems("name: h1\n")
    assert {f for _, f, _ in found} == {"router_id", "asn", "fabric", "pools"}


def test_not_a_mapping() -> None:
    assert "YAML mapping" in problems("- a\n- b\n")[0][2]


def test_peer_rules() -> None:
    extra = [
        "{address: 10.0.0.11, kind: reflector}",
        "{address: 10.0.0.2, kind: ebgp, asn: 64512}",
        "{address: 10.0.0.3, kind: reflector, asn: 65001}",
        "{address: 10.0.0.4, kind: client}",
    ]
    text = GOOD + "".join(f"  - {line}\n" for line in extra)
    found = {(f, m.split(";")[0]) for _, f, m in problems(text)}
    assert ("peers[2].address", "peer 10.0.0.11 is this node's own address") in found
    assert ("peers[3].asn", "an ebgp peer needs an AS other than ours (64512)") in found
    assert any(f == "peers[4].asn" and "iBGP" in m for f, m in found)
    assert ("peers[5].kind", "kind: client is only for role: reflector") in found
    assert len(found) == 4


def test_each_family_needs_a_fabric_address_and_a_session() -> None:
    v4_fabric = GOOD.replace(', address6: "fd00::11"', "")
    found = problems(v4_fabric)  # its IPv6 reflector has no IPv6 address to be peered from
    assert [(line, field) for line, field, _ in found] == [(8, "peers[1].address")]
    assert "the fabric has no IPv6 address" in found[0][2]
    v4_sessions = GOOD.replace('  - {address: "fd00::1", kind: reflector, description: rr1 over IPv6}\n', "")
    found = problems(v4_sessions)  # an IPv6 pool, and no IPv6 session to carry its routes
    assert [(line, field) for line, field, _ in found] == [(5, "pools[1]")]
    assert "is IPv6 but no peer is" in found[0][2] and "fabric.address6" in found[0][2]
    # no peers at all: a single host routes its own IPv6 containers, nothing to refuse
    assert parse_config(v4_sessions.split("peers:")[0], "n.yaml").pool_networks[1].version == 6
    # an IPv6-only fabric carries IPv4 containers too (RFC 8950)
    v6_only = v4_sessions.replace('address: 10.0.0.11, address6: "fd00::11"', 'address: "fd00::11"')
    v6_only = v6_only.replace(
        "- {address: 10.0.0.1, kind: reflector}", '- {address: "fd00::1", kind: reflector}'
    )
    assert [str(p.address) for p in parse_config(v6_only, "n.yaml").peers] == ["fd00::1"]
    found = problems(GOOD.replace('address6: "fd00::11"', 'address6: "10.0.0.12"'))
    assert found[0][1] == "fabric" and "must be an IPv6 address" in found[0][2]


def test_peer_hold_time() -> None:
    found = problems(GOOD + "  - {address: 10.0.0.5, kind: reflector, hold_time: 2}\n")
    assert [(line, field) for line, field, _ in found] == [(9, "peers[2].hold_time")]
    assert "0 (no keepalives) or 3-65535" in found[0][2]


def test_mesh_rules() -> None:
    assert problems(GOOD + "mesh: full\n")[0][1] == "mesh"
    assert problems(GOOD + "mesh_nodes: [10.0.0.12]\n")[0][1] == "mesh_nodes"
    cfg = parse_config(GOOD + "mesh: full\nmesh_nodes: [10.0.0.11, 10.0.0.12, 10.0.0.13]\n", "n.yaml")
    mesh = [p for p in resolved_peers(cfg) if p.kind is PeerKind.MESH]
    assert [str(p.address) for p in mesh] == ["10.0.0.12", "10.0.0.13"]
    # YAML 1.1 reads `off` as false; it must still mean off.
    assert parse_config(GOOD + "mesh: off\n", "n.yaml").mesh == "off"


def test_reflector_rules() -> None:
    assert problems(GOOD + "cluster_id: 10.0.0.254\n")[0][1] == "cluster_id"
    reflector = GOOD.replace("role: node", "").replace("kind: reflector", "kind: client")
    cfg = parse_config(reflector + "role: reflector\n", "rr.yaml")
    assert str(effective_cluster_id(cfg)) == "10.0.0.11"
    found = problems(GOOD + "role: reflector\n")
    assert found[0][1] == "peers[0].kind"


def test_workload_rules() -> None:
    text = GOOD + textwrap.dedent("""\
        workloads:
          - {id: a, netns: a, ips: [10.99.0.1]}
          - {id: a, netns: b, ips: [10.65.0.1]}
          - {id: c, netns: c, ips: [10.65.0.1]}
          - {id: "bad id", netns: d, ips: [10.65.0.2]}
    """)
    found = {(f, m.split(" ")[0]) for _, f, m in problems(text)}
    assert ("workloads[3].id", "'bad") in found


def test_workload_cross_rules() -> None:
    text = GOOD + textwrap.dedent("""\
        workloads:
          - {id: a, netns: a, ips: [10.99.0.1]}
          - {id: a, netns: b, ips: [10.65.0.1]}
          - {id: c, netns: c, ips: [10.65.0.1]}
    """)
    found = {f: m for _, f, m in problems(text)}
    assert "outside every pool" in found["workloads[0].ips[0]"]
    assert "used twice" in found["workloads[1].id"]
    assert "already given to workload 'a'" in found["workloads[2].ips[0]"]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    assert "cannot read the file" in str(info.value)


def test_a_subnet_as_an_address_points_to_range() -> None:
    found = problems(
        GOOD.replace("{address: 10.0.0.1, kind: reflector}", "{address: 10.0.0.0/24, kind: reflector}")
    )
    assert found[0][1] == "peers[0].address" and "`range: 10.0.0.0/24`" in found[0][2]


def test_aggregate_export_rules() -> None:
    ebgp = GOOD + "  - {address: 10.1.1.0, kind: ebgp, asn: 65001, export: aggregate}\n"
    assert parse_config(ebgp, "n.yaml").peers[2].export.value == "aggregate"
    found = problems(GOOD.replace("kind: reflector}", "kind: reflector, export: aggregate}"))
    assert found[0][1] == "peers[0].export"
    reflector = ebgp.replace("kind: reflector", "kind: client") + "role: reflector\n"
    found = problems(reflector)
    assert found[0][1] == "peers[2].export" and "fib.install_learned: true" in found[0][2]


def test_ipam_static_blocks() -> None:
    cfg = parse_config(GOOD + "ipam: {mode: static, blocks: [10.65.1.0/26, 'fd00:65::/122']}\n", "node.yaml")
    assert cfg.ipam.uses_blocks and [str(b) for b in cfg.ipam.blocks] == ["10.65.1.0/26", "fd00:65::/122"]
    assert (cfg.ipam.block_length(4), cfg.ipam.block_length(6)) == (26, 122)
    assert not parse_config(GOOD + "ipam: none\n", "node.yaml").ipam.uses_blocks  # shorthand


def test_ipam_rules() -> None:
    text = GOOD + textwrap.dedent("""\
        ipam:
          mode: static
          blocks: [10.65.1.0/24, 10.66.0.0/26, 10.65.2.0/26, 10.65.2.0/26]
    """)
    found = {f: m for _, f, m in problems(text)}
    assert "blocks are /26" in found["ipam.blocks[0]"]
    assert "outside every pool" in found["ipam.blocks[1]"]
    assert "overlaps ipam.blocks[2]" in found["ipam.blocks[3]"]
    assert (
        "needs this node's blocks"
        in dict((f, m) for _, f, m in problems(GOOD + "ipam: static\n"))["ipam.blocks"]
    )
    found = {f: m for _, f, m in problems(GOOD + "ipam: {mode: etcd, blocks: [10.65.1.0/26]}\n")}
    assert "only for mode: static" in found["ipam.blocks"] and "needs etcd" in found["ipam.etcd"]
    found = {
        f: m for _, f, m in problems(GOOD + "ipam: {mode: etcd, etcd: {endpoints: ['http://x:99999']}}\n")
    }
    assert "not an etcd endpoint" in found["ipam.etcd.endpoints[0]"]
    small = GOOD.replace("10.65.0.0/16", "10.65.0.0/28") + "ipam: {mode: static, blocks: ['fd00:65::/122']}\n"
    assert "smaller than one block" in {f: m for _, f, m in problems(small)}["pools[0]"]
    ok = parse_config(
        GOOD + "ipam: {mode: etcd, etcd: {endpoints: ['http://10.0.0.1:2379', 'e2:2379']}}\n", "n"
    )
    assert ok.ipam.etcd is not None and ok.ipam.etcd.endpoints == ("10.0.0.1:2379", "e2:2379")


def test_fabric_check_refuses_a_block_of_two_nodes(tmp_path: Path) -> None:
    from routed.cli import main

    labs = Path(__file__).parents[2] / "labs" / "quickstart"
    assert main(["config", "check", "--fabric", *map(str, sorted(labs.glob("*.yaml")))]) == 0
    bad = tmp_path / "h2.yaml"
    bad.write_text((labs / "h2.yaml").read_text().replace("10.65.2.0/26", "10.65.1.0/26"))
    sized = tmp_path / "h3.yaml"
    sized.write_text(
        (labs / "h3.yaml")
        .read_text()
        .replace("blocks: [10.65.3.0/26]", "blocks: [10.65.3.0/27], block_size: 27")
    )
    files = [str(labs / "h1.yaml"), str(bad), str(sized)]
    assert main(["config", "check", *files]) == 0  # each file alone is fine
    from routed.config import read_document
    from routed.config.fabric import CheckedFile, fabric_problems

    checked = [CheckedFile(f, read_document(f), load_config(f)) for f in files]
    found = [str(p) for p in fabric_problems(checked)]
    assert any(f"{bad}:" in p and "block 10.65.1.0/26 is also h1's" in p for p in found), found
    assert any(f"{sized}:" in p and "ipam.block_size is 27 here but 26" in p for p in found), found
    assert main(["config", "check", "--fabric", *files]) == 2
