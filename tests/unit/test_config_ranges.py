"""`peers: - {range: ..., kind: client}` in a reflector's config: what it becomes for the
speaker, and every way to get it wrong, each pointed at its line."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from routed.bfdsupervisor import sessions
from routed.bgpconfig import speaker_config
from routed.config import ConfigError, PeerRange, parse_config
from routed.config.reload import plan_reload
from tests.support.nodes import node_yaml

RR = ("role: reflector",)


def problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "rr.yaml")
    return [(p.line, p.field, p.message) for p in info.value.problems]


def test_a_range_of_clients_becomes_a_neighbor_range_with_the_peer_settings() -> None:
    cfg = parse_config(
        node_yaml(
            *RR,
            "peers:",
            "  - {address: 10.0.0.2, kind: nonclient}",
            "  - {range: 10.1.0.0/16, kind: client, hold_time: 30, password: s3cret, bfd: true}",
            me="10.0.0.1",
        ),
        "rr.yaml",
    )
    (clients,) = cfg.peer_ranges
    assert isinstance(clients, PeerRange) and [str(p.address) for p in cfg.listed_peers] == ["10.0.0.2"]
    speaker = speaker_config(cfg)
    (prefix_range,) = speaker.ranges
    one = prefix_range.neighbor(ip_address("10.1.2.3"))
    assert prefix_range.prefix == ip_network("10.1.0.0/16")
    assert one.address == ip_address("10.1.2.3") and one.from_range == ip_network("10.1.0.0/16")
    assert one.hold_time == 30 and one.md5_password == "s3cret" and one.asn == 64512
    assert speaker.range_for(ip_address("10.1.255.1")) is prefix_range
    assert speaker.range_for(ip_address("10.2.0.1")) is None
    # BFD follows a client once the speaker says it is there
    assert [s["peer"] for s in sessions(cfg)] == []
    assert [s["peer"] for s in sessions(cfg, [ip_address("10.1.2.3"), ip_address("10.9.9.9")])] == [
        "10.1.2.3"
    ]


def test_an_address_with_a_prefix_length_says_to_write_range() -> None:
    ((line, field, message),) = problems(node_yaml(*RR, "peers:", "  - {address: 10.1.0.0/16, kind: client}"))
    assert line == 8 and field == "peers[0].address" and "range: 10.1.0.0/16" in message


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ("{range: 10.1.0.0/16, kind: reflector}", "peers[0]", "kind: client"),
        ("{range: 10.1.0.0/16, kind: client, asn: 65001}", "peers[0].asn", "our AS"),
        ("{range: 10.1.0.0/16, kind: client, passwrd: x}", "peers[0].passwrd", "unknown field"),
        ("{range: 10.1.0.0/33, kind: client}", "peers[0].range", "10.1.0.0/33"),
        ('{range: "fd00:1::/64", kind: client}', "peers[0].range", "no IPv6 address"),
    ],
)
def test_a_bad_range_is_refused_at_its_line(entry: str, field: str, words: str) -> None:
    found = problems(node_yaml(*RR, "peers:", f"  - {entry}"))
    assert [(line, f) for line, f, _ in found] == [(8, field)], found
    assert words in found[0][2], found


def test_overlapping_ranges_and_a_range_on_a_node_are_refused() -> None:
    found = problems(
        node_yaml(
            *RR, "peers:", "  - {range: 10.1.0.0/16, kind: client}", "  - {range: 10.1.2.0/24, kind: client}"
        )
    )
    assert [(line, field) for line, field, _ in found] == [(9, "peers[1].range")]
    assert "overlaps peers[0]" in found[0][2]
    found = problems(node_yaml("peers:", "  - {range: 10.1.0.0/16, kind: client}"))
    assert any("role: reflector" in message for _, _, message in found), found


def test_a_reload_that_changes_a_range_says_so() -> None:
    def config(entry: str) -> object:
        return parse_config(node_yaml(*RR, "peers:", f"  - {entry}", me="10.0.0.1"), "rr.yaml")

    before = config("{range: 10.1.0.0/16, kind: client}")
    assert plan_reload(before, config("{range: 10.1.0.0/16, kind: client, hold_time: 30}")).ranges_changed  # type: ignore[arg-type]
    assert plan_reload(before, config("{range: 10.2.0.0/16, kind: client}")).ranges_changed  # type: ignore[arg-type]
    same = plan_reload(before, config("{range: 10.1.0.0/16, kind: client}"))  # type: ignore[arg-type]
    assert not same.ranges_changed and same.empty
