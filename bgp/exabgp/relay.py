"""The helper ExaBGP runs as its API process: hands its pipes to routed, then waits.

ExaBGP talks to an API process over that process's stdin/stdout. Instead of
copying bytes, this helper passes both pipe ends to the routed daemon over a
unix socket (SCM_RIGHTS), so routed reads ExaBGP's JSON and writes commands
directly. It then blocks until routed closes the socket, and exits.
"""

from __future__ import annotations

import os
import socket
import sys
import time


def _die_with_parent() -> None:
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: ExaBGP gone, we go


def main() -> int:
    _die_with_parent()
    path = sys.argv[1]
    deadline = time.monotonic() + 30
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            break
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                print(f"relay: routed is not listening on {path}", file=sys.stderr)
                return 1
            time.sleep(0.1)
    socket.send_fds(sock, [b"exabgp-pipes"], [0, 1])
    # Our copies must not keep the pipes open once routed has them, and our stderr
    # (ExaBGP's stdout, which routed reads) must not outlive ExaBGP either.
    os.close(0)
    os.close(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    while sock.recv(4096):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
