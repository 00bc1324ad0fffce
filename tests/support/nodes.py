"""A node's config for tests, built in one place: the identity every test shares (h1, AS 64512,
its fabric address) and the fields a test is about, as YAML lines. The head is always five
lines, so a field a test adds is on line 6 onwards (error messages name the line)."""

from __future__ import annotations

from routed.config import NodeConfig, parse_config


def node_yaml(
    *fields: str, name: str = "h1", me: str = "10.0.0.11", me6: str = "", pools: str = "10.65.0.0/16"
) -> str:
    """`fields`: YAML lines (or blocks) after the head, e.g. "mesh: full", "peers:\\n  - {...}";
    `me6`: the node's IPv6 fabric address on a dual-stack fabric."""
    address6 = f', address6: "{me6}"' if me6 else ""
    head = (
        f"name: {name}\nrouter_id: {me}\nasn: 64512\nfabric: {{interface: eth1, address: {me}{address6}}}\n"
        f"pools: [{pools}]\n"
    )
    return head + "".join(field.rstrip("\n") + "\n" for field in fields)


def node_config(*fields: str, file: str = "h1.yaml", **head: str) -> NodeConfig:
    return parse_config(node_yaml(*fields, **head), file)
