"""The kernel's TCP-MD5 drop counters (TcpExt in /proc/net/netstat, per network namespace).

The kernel drops a segment whose MD5 signature is wrong, missing or unexpected without a
word to either side; these counters are the only trace, and say why a session never opens.
"""

from __future__ import annotations

from pathlib import Path

MD5_COUNTERS = ("TCPMD5NotFound", "TCPMD5Unexpected", "TCPMD5Failure")


def tcp_md5_drops(path: Path = Path("/proc/net/netstat")) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            row = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return {name: int(row[name]) for name in MD5_COUNTERS if name in row}
    return {}
