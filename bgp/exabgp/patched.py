"""The ExaBGP releases the launcher's patches were written for (bgp/exabgp/launch.py applies
them only to these), and whether the installed ExaBGP is one: the daemon asks before writing
what only a patched ExaBGP reads, neighbour ranges (bgp/exabgp/neighborranges.py). The
daemon and its ExaBGP run from the same environment (the launcher is `sys.executable -m
bgp.exabgp.launch`), so the installed distribution is the one that runs."""

from __future__ import annotations

import importlib.metadata

PATCHED_VERSIONS = ("5.0.",)


def installed_is_patched() -> bool:
    try:
        return importlib.metadata.version("exabgp").startswith(PATCHED_VERSIONS)
    except importlib.metadata.PackageNotFoundError:
        return False
