"""Load and validate a node's YAML config into an immutable NodeConfig.

Every problem is reported as FILE:LINE:COLUMN: FIELD: what is wrong and what is
allowed, and all problems are reported at once, so a user fixes a file in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path as FsPath

from pydantic import ValidationError

from routed.config.checks import cross_field_problems
from routed.config.schema import NodeConfig, Peer, PeerKind, Role, Workload
from routed.config.yamlmarks import Mark, Path, YamlLoadError, load_with_marks

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "NodeConfig",
    "Peer",
    "PeerKind",
    "Role",
    "Workload",
    "load_config",
    "parse_config",
]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        field = f" {self.field}:" if self.field else ""
        return f"{self.file}:{self.line}:{self.column}:{field} {self.message}"


class ConfigError(Exception):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def format_path(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _locate(path: Path, marks: dict[Path, Mark]) -> Mark:
    """The mark of the deepest part of `path` that exists in the file."""
    for end in range(len(path), -1, -1):
        mark = marks.get(tuple(path[:end]))
        if mark is not None:
            return mark
    return Mark(1, 1)


def _pydantic_message(error: dict[str, object]) -> str:
    kind = error.get("type")
    message = str(error.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        return "unknown field; check its spelling against config/README.md"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error" or kind == "enum":
        return message.replace("Input should be", "must be")
    return message.removeprefix("Value error, ").replace("Input should be", "must be")


def parse_config(text: str, filename: str) -> NodeConfig:
    try:
        data, marks = load_with_marks(text)
    except YamlLoadError as exc:
        raise ConfigError(
            [
                ConfigProblem(filename, p.mark.line, p.mark.column, format_path(p.path), p.message)
                for p in exc.problems
            ]
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigProblem(
                    filename,
                    1,
                    1,
                    "",
                    "the config must be a YAML mapping "
                    "of fields (name:, router_id:, ...); see config/examples/",
                )
            ]
        )
    try:
        cfg = NodeConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            # pydantic appends the union member ("function-before[...]") to loc; keep real fields.
            path = tuple(p for p in error["loc"] if isinstance(p, int) or "[" not in str(p))
            mark = _locate(path, marks)
            problems.append(
                ConfigProblem(
                    filename, mark.line, mark.column, format_path(path), _pydantic_message(dict(error))
                )
            )
        raise ConfigError(problems) from exc
    cross = cross_field_problems(cfg)
    if cross:
        raise ConfigError(
            [
                ConfigProblem(filename, *_mark_tuple(_locate(p.path, marks)), format_path(p.path), p.message)
                for p in cross
            ]
        )
    return cfg


def _mark_tuple(mark: Mark) -> tuple[int, int]:
    return mark.line, mark.column


def load_config(path: str | FsPath) -> NodeConfig:
    try:
        text = FsPath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), 0, 0, "", f"cannot read the config: {exc.strerror}")]
        ) from exc
    return parse_config(text, str(path))
