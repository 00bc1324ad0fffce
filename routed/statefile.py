"""routed's state files (workloads, the IPAM cache, Docker's reservations): versioned JSON,
replaced atomically and synced, so a crash leaves the old file or the new one, never half."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class StateFileError(ValueError):
    """Unreadable, or of another format version; the message names the file."""


def load(path: Path, version: int) -> dict[str, Any] | None:
    """The file's content, or None if there is no file yet."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateFileError(f"{path}: cannot read it ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("version") != version:
        found = raw.get("version") if isinstance(raw, dict) else None
        raise StateFileError(f"{path}: format {found!r} is not {version}, which this routed reads")
    return raw


def save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
