"""What a lab has made, as recorded in its state directory, and how it reads."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bgp import procfs
from routed.lab.topology import Topology
from routed.netns import NETNS_RUN_DIR

STATE_ROOT = Path(os.environ.get("ROUTED_LAB_STATE", "/run/routed-lab"))


class LabError(Exception):
    """The lab could not be brought up or used; the message says what to do."""


@dataclass(frozen=True, slots=True)
class NodeStatus:
    name: str
    netns: str
    image: str
    state: str
    pid: int | None
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]


def state_dir(topo: Topology) -> Path:
    return STATE_ROOT / topo.full_name


def _state_file(topo: Topology) -> Path:
    return state_dir(topo) / "state.json"


def read_state(topo: Topology) -> dict[str, Any]:
    try:
        return dict(json.loads(_state_file(topo).read_text()))
    except (OSError, ValueError):
        return {"nodes": {}}


def write_state(topo: Topology, state: dict[str, Any]) -> None:
    path = _state_file(topo)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def netns_exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def alive(pid: int | None, mnt_ino: int | None) -> bool:
    """Is `pid` still the process we started (same mount namespace)?"""
    return pid is not None and mnt_ino is not None and procfs.ns_inode(f"/proc/{pid}/ns/mnt") == mnt_ino
