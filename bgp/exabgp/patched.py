"""The ExaBGP releases the launcher's patches were written for (bgp/exabgp/launch.py applies
them only to these), and whether the installed ExaBGP is one: the daemon asks before writing
what only a patched ExaBGP reads, neighbour ranges (bgp/exabgp/neighborranges.py). The
daemon and its ExaBGP run from the same environment (the launcher is `sys.executable -m
bgp.exabgp.launch`), so the ExaBGP the daemon finds is the one that runs.

Both ask ExaBGP's own `exabgp.version`, the same way, so they cannot disagree; not the
distribution's metadata, whose importlib.metadata (email, zipfile, pathlib) is 4.5 MB on a
bare interpreter and was 1.4 MB of the running ExaBGP (issue 30, item 5)."""

from __future__ import annotations

PATCHED_VERSIONS = ("5.0.",)


def installed_is_patched() -> bool:
    try:
        from exabgp.version import version  # type: ignore[import-untyped]
    except ImportError:
        return False
    return isinstance(version, str) and version.startswith(PATCHED_VERSIONS)
