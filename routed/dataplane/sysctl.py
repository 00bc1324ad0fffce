"""Sysctls of the daemon's own network namespace, written through /proc/sys."""

from __future__ import annotations

from pathlib import Path

PROC_SYS = Path("/proc/sys")


def write(name: str, value: str) -> None:
    path = PROC_SYS / name.replace(".", "/")
    if path.read_text().strip() != value:
        path.write_text(value)


def read(name: str) -> str:
    return (PROC_SYS / name.replace(".", "/")).read_text().strip()


def enable_forwarding(ipv6: bool) -> None:
    write("net.ipv4.ip_forward", "1")
    if ipv6:
        write("net.ipv6.conf.all.forwarding", "1")


def set_interface(family: str, ifname: str, key: str, value: str) -> None:
    # Interface names may contain dots, which the dotted form cannot express.
    path = PROC_SYS / "net" / family / "conf" / ifname / key
    if path.read_text().strip() != value:
        path.write_text(value)
