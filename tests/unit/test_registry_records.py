"""The node registry's records (routed.registry) are hostile input: only what routed writes is
taken; and `peers: - {registry: etcd, kind: client}` in a reflector's config."""

from __future__ import annotations

import json
from ipaddress import ip_address

import pytest

from routed.bfdsupervisor import sessions
from routed.bgpconfig import speaker_config
from routed.config import ConfigError, PeerRegistry, parse_config
from routed.registry import BadNode, node_key, parse, record
from tests.support.nodes import node_config, node_yaml

PREFIX = "/routed"
ETCD = "ipam: {mode: etcd, etcd: {endpoints: ['10.0.0.1:2379']}}"


def test_what_a_node_writes_reads_back() -> None:
    cfg = node_config(ETCD, me="10.0.0.11", me6="fd00::11")
    key, value = node_key(PREFIX, "h1"), record(cfg)
    assert key == b"/routed/nodes/v1/h1"
    assert parse(key, value, PREFIX) == ("h1", (ip_address("10.0.0.11"), ip_address("fd00::11")))


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("h1", b"{not json", "not a registry record"),
        ("h1", b"\xff\xfe", "not a registry record"),
        ("h1", json.dumps({"node": "h2", "addresses": ["10.0.0.11"]}).encode(), "do not agree"),
        ("bad name!", json.dumps({"node": "bad name!", "addresses": ["10.0.0.11"]}).encode(), "do not agree"),
        ("h1", json.dumps({"node": "h1", "addresses": "10.0.0.11"}).encode(), "a list of one or two"),
        ("h1", json.dumps({"node": "h1", "addresses": []}).encode(), "a list of one or two"),
        ("h1", json.dumps({"node": "h1", "addresses": ["a", "b", "c"]}).encode(), "a list of one or two"),
        ("h1", json.dumps({"node": "h1", "addresses": ["10.0.0.300"]}).encode(), "does not parse"),
        ("h1", json.dumps({"node": "h1", "addresses": ["127.0.0.1"]}).encode(), "not one a host peers from"),
        ("h1", json.dumps({"node": "h1", "addresses": ["224.0.0.5"]}).encode(), "not one a host peers from"),
        ("h1", json.dumps(["h1"]).encode(), "do not agree"),
    ],
)
def test_a_record_routed_would_not_write_is_refused(key: str, value: bytes, words: str) -> None:
    with pytest.raises(BadNode, match=words):
        parse(f"{PREFIX}/nodes/v1/{key}".encode(), value, PREFIX)


def test_a_reflector_takes_its_clients_settings_from_the_registry_entry() -> None:
    cfg = parse_config(
        node_yaml(
            "role: reflector",
            ETCD,
            "peers:",
            "  - {address: 10.0.0.2, kind: nonclient}",
            "  - {registry: etcd, kind: client, hold_time: 30, password: s3cret, bfd: true}",
            me="10.0.0.1",
        ),
        "rr1.yaml",
    )
    assert isinstance(cfg.peer_registry, PeerRegistry)
    speaker = speaker_config(cfg, [ip_address("10.0.0.12"), ip_address("10.0.0.11")])
    listed, *clients = speaker.neighbors
    assert str(listed.address) == "10.0.0.2" and not listed.registered
    assert [str(c.address) for c in clients] == ["10.0.0.11", "10.0.0.12"]
    assert all(c.registered and c.hold_time == 30 and c.md5_password == "s3cret" for c in clients)
    assert [s["peer"] for s in sessions(cfg, [ip_address("10.0.0.11")])] == ["10.0.0.11"]
    # without the entry the registry gives nothing
    plain = parse_config(node_yaml("role: reflector", ETCD, me="10.0.0.1"), "rr1.yaml")
    assert speaker_config(plain, [ip_address("10.0.0.11")]).neighbors == ()


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (("role: reflector", "peers:", "  - {registry: etcd, kind: client}"), "give this node ipam"),
        ((ETCD, "peers:", "  - {registry: etcd, kind: client}"), "role: reflector"),
        (("role: reflector", ETCD, "peers:", "  - {registry: etcd, kind: reflector}"), "kind: client"),
        (("role: reflector", ETCD, "peers:", "  - {registry: consul, kind: client}"), "etcd"),
        (
            (
                "role: reflector",
                ETCD,
                "peers:",
                "  - {registry: etcd, kind: client}",
                "  - {registry: etcd, kind: client}",
            ),
            "already peers[0]",
        ),
    ],
)
def test_a_registry_entry_that_cannot_work_is_refused(fields: tuple[str, ...], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(node_yaml(*fields, me="10.0.0.1"), "rr1.yaml")
    assert words in str(info.value), str(info.value)
