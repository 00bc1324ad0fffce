"""Load YAML into plain Python data while remembering where every value came from.

PyYAML's safe loader forgets line numbers and silently keeps the last of two
duplicate keys. We compose the node tree ourselves so that every error can
name file:line:column, and so that a duplicate key is an error, not a surprise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True, slots=True)
class YamlProblem:
    mark: Mark
    path: Path
    message: str


class YamlLoadError(Exception):
    def __init__(self, problems: list[YamlProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def load_with_marks(text: str) -> tuple[Any, dict[Path, Mark]]:
    """Parse one YAML document; return its data and a map from field path to mark.

    For a mapping entry the mark recorded under its path is the key's position,
    which is what a reader looks for when told "peers[1].asn is wrong".
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
        raise YamlLoadError([YamlProblem(where, (), f"YAML syntax error: {exc.problem or exc}")]) from exc
    marks: dict[Path, Mark] = {}
    problems: list[YamlProblem] = []
    if root is None:
        return None, marks
    constructor = yaml.SafeLoader("")

    def build(node: yaml.Node, path: Path) -> Any:
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int):
                    problems.append(
                        YamlProblem(_mark(key_node), path, f"mapping key {key!r} must be a string")
                    )
                    continue
                child = (*path, key)
                if key in result:
                    first = marks[child]
                    problems.append(
                        YamlProblem(
                            _mark(key_node),
                            child,
                            f"duplicate key {key!r} (first given at line {first.line}); remove one of them",
                        )
                    )
                    continue
                marks[child] = _mark(key_node)
                result[key] = build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                marks[(*path, index)] = _mark(item)
                items.append(build(item, (*path, index)))
            return items
        return constructor.construct_object(node, deep=True)

    marks[()] = _mark(root)
    data = build(root, ())
    if problems:
        raise YamlLoadError(problems)
    return data, marks
