"""Checks across the configs of several nodes (`routed config check h1.yaml h2.yaml ...`):
what no single file can show. Pure, given the files' text."""

from __future__ import annotations

from dataclasses import dataclass

from routed.config.document import ConfigProblem, _locate, format_path
from routed.config.schema import NodeConfig
from routed.config.yamlmarks import Path, load_with_marks


@dataclass(frozen=True, slots=True)
class CheckedFile:
    name: str
    text: str
    cfg: NodeConfig


def fabric_problems(files: list[CheckedFile]) -> list[ConfigProblem]:
    """Two nodes listing overlapping static blocks, or disagreeing on the block sizes."""
    problems: list[ConfigProblem] = []
    marks = {f.name: load_with_marks(f.text)[1] for f in files}

    def problem(file: CheckedFile, path: Path, message: str) -> ConfigProblem:
        mark = _locate(path, marks[file.name])
        return ConfigProblem(file.name, mark.line, mark.column, format_path(path), message)

    for index, file in enumerate(files):
        for other in files[:index]:
            if file.cfg.name == other.cfg.name:
                problems.append(problem(file, ("name",), f"node name {file.cfg.name} is also {other.name}'s"))
            for field in ("block_size", "block_size_v6"):
                mine, theirs = getattr(file.cfg.ipam, field), getattr(other.cfg.ipam, field)
                if mine != theirs:
                    problems.append(
                        problem(
                            file,
                            ("ipam", field),
                            f"ipam.{field} is {mine} here but {theirs} in {other.name}; every node of a "
                            "fabric must use the same (blocks of another length are refused)",
                        )
                    )
            for b_index, block in enumerate(file.cfg.ipam.blocks):
                for theirs in other.cfg.ipam.blocks:
                    if block.version == theirs.version and block.overlaps(theirs):
                        problems.append(
                            problem(
                                file,
                                ("ipam", "blocks", b_index),
                                f"block {block} is also {other.cfg.name}'s ({theirs} in {other.name}); "
                                "a block belongs to one node: give each node its own",
                            )
                        )
    return problems
