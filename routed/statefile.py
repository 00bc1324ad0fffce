"""routed's state files (workloads, the IPAM cache, Docker's reservations): versioned JSON,
checked against a schema on load, replaced atomically and synced (the file and its directory),
readable by root alone, so a crash leaves the old file or the new one, never half."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

MODE = 0o600  # workloads' namespaces and addresses, etcd's bookkeeping: root's business


class StateFileError(ValueError):
    """Unreadable, of another format version, or not what the schema says; the message names
    the file and the field."""


class StateModel(BaseModel):
    """A state file's schema: unknown fields are kept out, records are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Model = TypeVar("Model", bound=StateModel)


def load(path: Path, version: int, schema: type[Model]) -> Model | None:
    """The file's content checked against `schema`, or None if there is no file yet."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateFileError(f"{path}: cannot read it ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("version") != version:
        found = raw.get("version") if isinstance(raw, dict) else None
        raise StateFileError(f"{path}: format {found!r} is not {version}, which this routed reads")
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise StateFileError(f"{path}: {_first_problem(exc)}") from exc


def _first_problem(exc: ValidationError) -> str:
    problems = exc.errors(include_url=False)
    first = problems[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"field {where or '(top)'}: {first['msg']}{more}"


def save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, MODE)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, MODE)  # a .tmp left by an older routed may have other bits
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    # the rename itself must reach the disk, or a crash can bring back the old file
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
