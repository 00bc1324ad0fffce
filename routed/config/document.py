"""Validate a YAML document against a pydantic model, with every problem at FILE:LINE:COLUMN.

Shared by the node config and the lab topology files, so both speak the same
error format and keep the same rules (unknown keys and duplicate keys are errors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from routed.config.yamlmarks import Mark, Path, YamlLoadError, load_with_marks

Model = TypeVar("Model", bound=BaseModel)


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


@dataclass(frozen=True, slots=True)
class FieldProblem:
    path: Path
    message: str


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


def _pydantic_message(error: dict[str, object], reference: str) -> str:
    kind = error.get("type")
    message = str(error.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        return f"unknown field; check its spelling against {reference}"
    if kind == "missing":
        return "required field is missing"
    return message.removeprefix("Value error, ").replace("Input should be", "must be")


def validate_document(
    text: str,
    filename: str,
    model: type[Model],
    *,
    reference: str,
    cross_checks: Callable[[Model], list[FieldProblem]] | None = None,
) -> Model:
    def problem(mark: Mark, path: Path, message: str) -> ConfigProblem:
        return ConfigProblem(filename, mark.line, mark.column, format_path(path), message)

    try:
        data, marks = load_with_marks(text)
    except YamlLoadError as exc:
        raise ConfigError([problem(p.mark, p.path, p.message) for p in exc.problems]) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            [problem(Mark(1, 1), (), f"the file must be a YAML mapping of fields; see {reference}")]
        )
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            # pydantic appends validator names ("function-before[...]") to loc; keep real fields.
            path = tuple(p for p in error["loc"] if isinstance(p, int) or "[" not in str(p))
            problems.append(problem(_locate(path, marks), path, _pydantic_message(dict(error), reference)))
        raise ConfigError(problems) from exc
    cross = cross_checks(result) if cross_checks else []
    if cross:
        raise ConfigError([problem(_locate(p.path, marks), p.path, p.message) for p in cross])
    return result
