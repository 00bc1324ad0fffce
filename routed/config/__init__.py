"""Load and validate a node's YAML config into an immutable NodeConfig.

Every problem is reported as FILE:LINE:COLUMN: FIELD: what is wrong and what is
allowed, and all problems are reported at once, so a user fixes a file in one pass.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path as FsPath

from routed.config.checks import cross_field_problems
from routed.config.document import ConfigError, ConfigProblem, format_path, validate_document
from routed.config.peering import Peer, PeerRange, PeerRegistry
from routed.config.schema import NodeConfig
from routed.config.services import Workload
from routed.config.types import PeerKind, Role
from routed.config.yamlmarks import Mark, load_with_marks

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "NodeConfig",
    "Peer",
    "PeerKind",
    "PeerRange",
    "PeerRegistry",
    "Role",
    "Workload",
    "load_config",
    "parse_config",
    "read_document",
    "refuse_readable_secrets",
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


def inline_secrets(cfg: NodeConfig) -> list[tuple[str | int, ...]]:
    """Where the config holds a password itself (not in a password_file)."""
    found: list[tuple[str | int, ...]] = []
    for index, peer in enumerate(cfg.peers):
        if peer.password is not None:
            found.append(("peers", index, "password"))
        if peer.bfd is not None and peer.bfd.auth is not None and peer.bfd.auth.password is not None:
            found.append(("peers", index, "bfd", "auth", "password"))
    if cfg.ipam.etcd is not None and cfg.ipam.etcd.password is not None:
        found.append(("ipam", "etcd", "password"))
    return found


def refuse_readable_secrets(path: str | FsPath, text: str, cfg: NodeConfig) -> None:
    """A config with inline passwords must be as private as a password_file: root's and 0600."""
    where = inline_secrets(cfg)
    if not where:
        return
    try:
        info = os.stat(path)
    except OSError:
        return  # read a moment ago; gone now: nothing left to protect
    if info.st_uid == 0 and not info.st_mode & 0o077:
        return
    _, marks = load_with_marks(text)
    mode = stat.S_IMODE(info.st_mode)
    raise ConfigError(
        [
            ConfigProblem(
                str(path),
                (mark := marks.get(field, Mark(1, 1))).line,
                mark.column,
                format_path(field),
                f"a password in a file that uid {info.st_uid} owns with mode {mode:04o} (others may "
                f"read or change it); chown root {path} && chmod 600 {path}, or use password_file",
            )
            for field in where
        ]
    )


def load_config(path: str | FsPath) -> NodeConfig:
    text = read_document(path)
    cfg = parse_config(text, str(path))
    refuse_readable_secrets(path, text, cfg)
    return cfg
