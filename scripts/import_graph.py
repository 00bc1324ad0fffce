"""The import arrows between routed's and bgp's subpackages: which subpackage imports which, the
arrows from bgp into routed (there should be none), and the cycles between subpackages.

    python3 scripts/import_graph.py        exit 1 if bgp imports routed or a cycle exists
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("routed", "bgp")


def subpackage(module: str) -> str:
    return ".".join(module.split(".")[:2])


def arrows() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text())):
                targets: list[str] = []
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    # `from bgp import rib` is an arrow to bgp.rib, not to bgp
                    top = node.module in PACKAGES
                    targets = [f"{node.module}.{a.name}" for a in node.names] if top else [node.module]
                elif isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                for target in targets:
                    if target.split(".")[0] in PACKAGES and subpackage(target) != subpackage(module):
                        edges[subpackage(module)].add(subpackage(target))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's smallest rotation, found by depth-first search (the graph is small)."""
    found: set[tuple[str, ...]] = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                rotation = min(tuple(path[i:] + path[:i]) for i in range(len(path)))
                found.add(rotation)
            elif nxt not in path and nxt > start:
                walk(start, nxt, [*path, nxt])

    for start in sorted(edges):
        walk(start, start, [start])
    return [list(c) for c in sorted(found)]


def main() -> int:
    edges = arrows()
    for source in sorted(edges):
        print(f"{source} -> {', '.join(sorted(edges[source]))}")
    upward = sorted((a, b) for a in edges for b in edges[a] if a.startswith("bgp") and b.startswith("routed"))
    loops = cycles(edges)
    print(f"\nbgp -> routed: {', '.join(f'{a} -> {b}' for a, b in upward) or 'none'}")
    print(f"cycles: {'; '.join(' -> '.join([*c, c[0]]) for c in loops) or 'none'}")
    return 1 if upward or loops else 0


if __name__ == "__main__":
    sys.exit(main())
