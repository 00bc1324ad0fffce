"""`routed cni install`: put the plugin where runtimes look for it, and a network for it."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

BIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))  # Debian's podman, then the CNI default
CONF_DIR = Path("/etc/cni/net.d")
PLUGIN_NAME = "routed"


def conflist(
    socket: str = "/run/routed/routed.sock", config: str = "/etc/routed/routed.yaml"
) -> dict[str, Any]:
    """The `routed` network: routed attaches the container, portmap publishes its ports.
    (config/cni/routed.conflist is this, written out.)"""
    return {
        "cniVersion": "1.0.0",
        "name": "routed",
        "plugins": [
            {
                "type": PLUGIN_NAME,
                "socket": socket,
                "timeout": 10,
                "routedConfig": config,
                "capabilities": {"ips": True},  # `podman run --ip`, Kubernetes' ips annotation
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }


def plugin_source() -> Path:
    """The `routed-cni` console script of this installation (next to the running Python)."""
    script = Path(sys.executable).parent / "routed-cni"
    if not script.exists():
        found = shutil.which("routed-cni")
        if found is None:
            raise FileNotFoundError("routed-cni is not installed next to this routed; reinstall the package")
        script = Path(found)
    return script


def install(
    bin_dir: Path | None, conf_dir: Path | None, socket: str, config: str, force: bool = False
) -> list[str]:
    """Link the plugin into `bin_dir` and write the conflist into `conf_dir` (None: skip);
    returns what was done, one line each."""
    done = []
    target_dir = bin_dir or next((d for d in BIN_DIRS if d.is_dir()), BIN_DIRS[-1])
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / PLUGIN_NAME
    source = plugin_source()
    if target.is_symlink() or target.exists():
        target.unlink()
    os.symlink(source, target)
    done.append(f"plugin: {target} -> {source}")
    if conf_dir is not None:
        conf_dir.mkdir(parents=True, exist_ok=True)
        path = conf_dir / "87-routed.conflist"
        if path.exists() and not force:
            done.append(f"network: {path} exists, left as it is (--force replaces it)")
        else:
            path.write_text(json.dumps(conflist(socket, config), indent=2) + "\n")
            done.append(f"network: {path} (name routed: routed, then portmap)")
    return done
