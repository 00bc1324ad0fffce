"""The edge to the kernel's nftables, through libnftables (Debian's python3-nftables).

Chosen by measurement (bench/nft.py, NOTES.md): one libnftables transaction in nft's own
language replaces or edits the whole table atomically; pyroute2's nftables module speaks raw
netlink expressions, with no concatenated set lookups short of encoding registers by hand.

The Python binding is Debian's package (`apt install python3-nftables`, which brings
libnftables1): imported from the interpreter's path when it is there, else loaded from where
Debian puts it, so a venv or a plain wheel install finds it too.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path
from types import ModuleType
from typing import Any

from routed.firewall.ruleset import FAMILY, TABLE, Desired

__all__ = [
    "TABLE",
    "Nft",
    "NftError",
    "counters",
    "drop_counters",
    "elements_of",
    "forward_drops",
    "rules_of",
]

DEBIAN_MODULE = Path("/usr/lib/python3/dist-packages/nftables/__init__.py")


class NftError(Exception):
    """nftables refused a command, or cannot be used here; the message says which and why."""


def _binding() -> ModuleType:
    try:
        import nftables  # type: ignore[import-not-found]

        return nftables  # type: ignore[no-any-return]
    except ImportError:
        pass
    if not DEBIAN_MODULE.exists():
        raise NftError(
            "the nftables Python binding is missing: apt install python3-nftables (it brings libnftables1)"
        )
    spec = importlib.util.spec_from_file_location(
        "nftables", DEBIAN_MODULE, submodule_search_locations=[str(DEBIAN_MODULE.parent)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nftables"] = module
    spec.loader.exec_module(module)
    return module


class Nft:
    """One libnftables context: nft scripts in, the table as JSON out."""

    def __init__(self) -> None:
        try:
            self._ctx = _binding().Nftables()
        except OSError as exc:  # libnftables.so.1 itself
            raise NftError(f"cannot load libnftables: {exc}; apt install libnftables1") from exc
        self._ctx.set_json_output(False)

    def run(self, script: str) -> None:
        code, _, error = self._ctx.cmd(script)
        if code != 0:
            raise NftError(" ".join(error.split())[:500] or f"nft exited {code}")

    def table(self) -> dict[str, Any] | None:
        """routed's table as libnftables' JSON objects (None if there is none)."""
        return self.listed(f"list table {FAMILY} {TABLE}")

    def listed(self, command: str) -> dict[str, Any] | None:
        """A `list ...` command's JSON (None if what it lists is not there)."""
        self._ctx.set_json_output(True)
        try:
            code, out, error = self._ctx.cmd(command)
        finally:
            self._ctx.set_json_output(False)
        if code != 0:
            if "No such file or directory" in error:
                return None
            raise NftError(" ".join(error.split())[:500])
        return dict(json.loads(out))


def forward_drops(ctx: Nft) -> list[str]:
    """Other tables' forward base chains whose policy is drop ("ip filter FORWARD"): read, never
    touched. Docker sets iptables' FORWARD to drop when it turns IP forwarding on itself (it
    started before routed); then only what its rules accept is forwarded, workloads' not."""
    try:
        chains = ctx.listed("list chains") or {}
    except NftError:
        return []  # only a warning is at stake: never fail the table's sync for it
    found = []
    for item in chains.get("nftables", []):
        chain = item.get("chain")
        if (
            chain
            and chain.get("hook") == "forward"
            and chain.get("policy") == "drop"
            and chain.get("table") != TABLE
        ):
            found.append(f"{chain['family']} {chain['table']} {chain['name']}")
    return sorted(found)


def rules_of(listed: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's chains and rules, without handles and counter values: what must stay as made."""
    out = []
    for item in listed.get("nftables", []):
        for kind in ("chain", "rule"):
            if kind in item:
                body = {k: v for k, v in item[kind].items() if k != "handle"}
                if kind == "rule":
                    body["expr"] = [
                        {"counter": None} if "counter" in expr else expr for expr in body.get("expr", [])
                    ]
                out.append({kind: body})
    return out


def _ip(value: Any) -> IPv4Address | IPv6Address:
    return ip_address(str(value))


def elements_of(listed: dict[str, Any]) -> Desired:
    """What the kernel's sets hold, read back as a Desired."""
    interfaces: set[str] = set()
    sources4: set[tuple[str, IPv4Address]] = set()
    sources6: set[tuple[str, IPv6Address]] = set()
    pools: set[IPv4Network | IPv6Network] = set()
    skip: set[IPv4Network | IPv6Network] = set()
    for item in listed.get("nftables", []):
        found = item.get("set")
        if not found:
            continue
        for element in found.get("elem", []):
            if found["name"] == "workload_interfaces":
                interfaces.add(str(element))
                continue
            if found["name"] in ("pools4", "pools6"):
                pools.add(_network(element))
                continue
            if found["name"] in ("nat_skip4", "nat_skip6"):
                skip.add(_network(element))
                continue
            name, address = element["concat"]
            ip = _ip(address)
            if isinstance(ip, IPv4Address) and found["name"] == "sources4":
                sources4.add((str(name), ip))
            elif isinstance(ip, IPv6Address) and found["name"] == "sources6":
                sources6.add((str(name), ip))
    return Desired(
        frozenset(interfaces),
        frozenset(sources4),
        frozenset(sources6),
        frozenset(p for p in pools if isinstance(p, IPv4Network)),
        frozenset(p for p in pools if isinstance(p, IPv6Network)),
        frozenset(p for p in skip if isinstance(p, IPv4Network)),
        frozenset(p for p in skip if isinstance(p, IPv6Network)),
    )


def _network(element: Any) -> IPv4Network | IPv6Network:
    """An interval set's element: {"prefix": {"addr", "len"}}, or a lone address."""
    if isinstance(element, dict) and "prefix" in element:
        return ip_network(f"{element['prefix']['addr']}/{element['prefix']['len']}")
    return ip_network(str(element))


def counters(listed: dict[str, Any], chains: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Packets and bytes through the counted rules of `chains`, summed by the rules' comment."""
    counts: dict[str, tuple[int, int]] = {}
    for item in listed.get("nftables", []):
        rule = item.get("rule")
        if rule and rule.get("comment") and rule.get("chain") in chains:
            for expr in rule.get("expr", []):
                if "counter" in expr:
                    comment = str(rule["comment"])
                    packets, size = counts.get(comment, (0, 0))
                    counts[comment] = (
                        packets + int(expr["counter"]["packets"]),
                        size + int(expr["counter"]["bytes"]),
                    )
    return counts


def drop_counters(listed: dict[str, Any]) -> dict[str, int]:
    """Packets dropped by each of the anti-spoofing and input rules, by its comment."""
    return {comment: packets for comment, (packets, _) in counters(listed, ("antispoof", "input")).items()}
