"""Load and validate a node's YAML config into an immutable NodeConfig.

Every problem is reported as FILE:LINE:COLUMN: FIELD: what is wrong and what is
allowed, and all problems are reported at once, so a user fixes a file in one pass.
"""

from __future__ import annotations

from pathlib import Path as FsPath

from routed.config.checks import cross_field_problems
from routed.config.document import ConfigError, ConfigProblem, validate_document
from routed.config.schema import NodeConfig, Peer, PeerKind, Role, Workload

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
    "read_document",
]


def parse_config(text: str, filename: str) -> NodeConfig:
    return validate_document(
        text, filename, NodeConfig, reference="config/README.md", cross_checks=cross_field_problems
    )


def read_document(path: str | FsPath) -> str:
    try:
        return FsPath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), 0, 0, "", f"cannot read the file: {exc.strerror}")]
        ) from exc


def load_config(path: str | FsPath) -> NodeConfig:
    return parse_config(read_document(path), str(path))
