"""What a config reload applies, and what it refuses (routed.config.reload, pure)."""

from __future__ import annotations

from routed.config import parse_config
from routed.config.peering import Peer
from routed.config.reload import plan_reload
from routed.config.schema import NodeConfig
from tests.support.nodes import node_yaml

BASE = node_yaml(
    "peers:", "  - {address: 10.0.0.1, kind: reflector}", "  - {address: 10.0.0.2, kind: reflector}"
)


def config(text: str = BASE) -> NodeConfig:
    return parse_config(text, "node.yaml")


def edited(*pairs: tuple[str, str]) -> NodeConfig:
    text = BASE
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return parse_config(text, "node.yaml")


def addresses(peers: tuple[Peer, ...]) -> list[str]:
    return [str(p.address) for p in peers]


def test_nothing_changed() -> None:
    plan = plan_reload(config(), config())
    assert plan.empty and not plan.refused


def test_a_peer_added_and_one_removed_touch_no_other() -> None:
    new = edited(("  - {address: 10.0.0.2, kind: reflector}\n", "  - {address: 10.0.0.3, kind: reflector}\n"))
    plan = plan_reload(config(), new)
    assert not plan.refused
    assert addresses(plan.peers_added) == ["10.0.0.3"]
    assert addresses(plan.peers_removed) == ["10.0.0.2"]
    assert plan.peers_changed == ()
    assert not plan.policy_changed and not plan.export_changed


def test_a_description_or_export_change_does_not_reset_the_session() -> None:
    new = edited(
        ("{address: 10.0.0.1, kind: reflector}", "{address: 10.0.0.1, kind: reflector, description: a}")
    )
    assert plan_reload(config(), new).peers_changed == ()
    new = edited(
        ("{address: 10.0.0.1, kind: reflector}", "{address: 10.0.0.1, kind: reflector, hold_time: 30}")
    )
    assert addresses(plan_reload(config(), new).peers_changed) == ["10.0.0.1"]


def test_a_default_every_session_uses_resets_them_all() -> None:
    new = parse_config(BASE + "bgp: {hold_time: 30}\n", "node.yaml")
    assert addresses(plan_reload(config(), new).peers_changed) == ["10.0.0.1", "10.0.0.2"]


def test_pools_and_import_policy_rejudge_routes() -> None:
    plan = plan_reload(config(), edited(("pools: [10.65.0.0/16]", "pools: [10.65.0.0/16, 10.66.0.0/16]")))
    assert plan.policy_changed and not plan.refused and plan.changed == ("pools",)
    plan = plan_reload(config(), parse_config(BASE + "bgp: {import_allow: [10.99.0.0/24]}\n", "node.yaml"))
    assert plan.policy_changed and not plan.peers_changed


def test_export_changes_resend() -> None:
    plan = plan_reload(config(), parse_config(BASE + "bgp: {communities: ['64512:10']}\n", "node.yaml"))
    assert plan.export_changed and not plan.policy_changed


def test_identity_changes_need_a_restart() -> None:
    plan = plan_reload(config(), edited(("router_id: 10.0.0.11", "router_id: 10.0.0.99")))
    assert plan.refused == ("router_id: '10.0.0.11' -> '10.0.0.99'",)
    plan = plan_reload(config(), edited(("asn: 64512", "asn: 64513")))
    assert plan.refused == ("asn: 64512 -> 64513",)
    plan = plan_reload(config(), parse_config(BASE + "fib: {table: 100}\n", "node.yaml"))
    assert plan.refused == ("fib.table: 254 -> 100",)


def test_declared_workloads_added_are_attached_and_removed_left() -> None:
    old = parse_config(BASE + "workloads: [{id: a, netns: a, ips: [10.65.1.1]}]\n", "node.yaml")
    new = parse_config(BASE + "workloads: [{id: b, netns: b, ips: [10.65.1.2]}]\n", "node.yaml")
    plan = plan_reload(old, new)
    assert plan.workloads_added == ("b",) and plan.workloads_left == ("a",)
