"""Reading the process table (/proc): who is alive, whose child, running what, in which namespace.

Shared by ExaBGP's supervision (its API process), the lab runner (a node's processes) and the
tests; it lives in bgp because bgp imports nothing from routed. A process may exit between two
reads: every function answers None (or nothing) for one that is gone, never raises for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path

PROC = Path("/proc")


def pids() -> Iterator[int]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name: [state, ppid, ...], or None if gone."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def parent(pid: int) -> int | None:
    fields = stat(pid)
    return int(fields[1]) if fields is not None else None


def state(pid: int) -> str | None:
    """R, S, D, Z (a zombie), ... or None if gone."""
    fields = stat(pid)
    return fields[0] if fields is not None else None


def start_time(pid: int) -> str | None:
    """A live process's start time (clock ticks since boot): a pid and this name one process.
    None once it has exited (a zombie included)."""
    fields = stat(pid)
    return None if fields is None or fields[0] in ("Z", "X") else fields[19]


def argv(pid: int) -> list[str] | None:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def command_line(pid: int) -> str:
    """Its argv joined with spaces ("" if gone or a kernel thread)."""
    return " ".join(argv(pid) or [])


def ns_inode(path: str | Path) -> int | None:
    """The inode that names a namespace (/proc/PID/ns/net, /run/netns/NAME), None if gone."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def namespace(pid: int, kind: str = "net") -> int | None:
    return ns_inode(PROC / str(pid) / "ns" / kind)


def in_namespaces(net: AbstractSet[int], mnt: AbstractSet[int] = frozenset()) -> list[int]:
    """Every process (but us) in one of these network or mount namespaces, by inode."""
    me = os.getpid()
    return [
        pid for pid in pids() if pid != me and (namespace(pid, "net") in net or namespace(pid, "mnt") in mnt)
    ]


def with_descendants(roots: list[int]) -> list[int]:
    """The processes and all their descendants (but us)."""
    children: dict[int, list[int]] = {}
    for pid in pids():
        if (ppid := parent(pid)) is not None:
            children.setdefault(ppid, []).append(pid)
    out, todo = set(roots), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    out.discard(os.getpid())
    return sorted(out)


def matching(needle: str, netns: int | None = None) -> list[int]:
    """Processes whose command line holds `needle` (in the network namespace `netns`, if given)."""
    return [
        pid
        for pid in pids()
        if (netns is None or namespace(pid, "net") == netns) and needle in command_line(pid)
    ]
