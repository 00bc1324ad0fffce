"""A container image with no registry: busybox-static and its applets, as a tar that
`podman import` and `docker import` take (see shared/notes/podman.md)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

APPLETS = ("sh", "ip", "ping", "sleep", "cat", "echo", "httpd", "wget", "mkdir", "true")


def busybox_tar(root: Path) -> Path:
    """Write ROOT/image (the tree) and ROOT/bb.tar; returns the tar."""
    (root / "image" / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "image" / "bin" / "busybox")
    for applet in APPLETS:
        (root / "image" / "bin" / applet).symlink_to("busybox")
    with tarfile.open(root / "bb.tar", "w") as tar:
        tar.add(root / "image", arcname=".")
    return root / "bb.tar"
