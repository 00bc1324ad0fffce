"""Secrets and the files that hold them, as the config takes them: passwords (TCP-MD5, BFD,
etcd), password files and key files (root's, 0600), certificates. Pure but for reading files."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import PurePosixPath

from pydantic import SecretStr

MD5_KEY_BYTES = 80  # TCP_MD5SIG_MAXKEYLEN


def check_secret(secret: str, longest: int = MD5_KEY_BYTES) -> str:
    """A password as the kernel and every peer can take it: 1-`longest` bytes of UTF-8, no
    control characters (a newline or NUL would be a different key in BIRD's or FRR's config).
    Quotes and backslashes are fine: ExaBGP gets the key base64-encoded, never as text."""
    size = len(secret.encode())
    if not 1 <= size <= longest:
        raise ValueError(f"a password is 1-{longest} bytes, this one is {size}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in secret):
        raise ValueError("a password may not hold control characters (newline, tab, NUL...)")
    return secret


def inline_secret(value: SecretStr) -> SecretStr:
    check_secret(value.get_secret_value())
    return value


def secret_digest(secret: str | None) -> str | None:
    """What a reload compares: a secret's hash, so a rotated file is noticed without the key
    itself being kept twice or printed."""
    return None if secret is None else hashlib.sha256(secret.encode()).hexdigest()


def check_password_file(value: str) -> str:
    """A TCP-MD5 key kept out of the config: root's, 0600, 1-80 bytes. Checked at load,
    so `routed config check` and a reload refuse a file anyone else could read or change."""
    path = PurePosixPath(value)
    if not path.is_absolute():
        raise ValueError(f"{value!r} must be an absolute path, e.g. /etc/routed/peer.password")
    try:
        info = os.stat(value)
    except OSError as exc:
        raise ValueError(f"cannot read {value}: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{value} is not a regular file")
    if info.st_uid != 0 or info.st_mode & 0o077:
        raise ValueError(
            f"{value} is owned by uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):04o}; a password "
            f"file must be root's and 0600: chown root {value} && chmod 600 {value}"
        )
    try:
        check_secret(read_password(value))
    except ValueError as exc:
        raise ValueError(f"{value}: {exc} (one line)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {value}: {exc}") from exc
    return value


def read_password(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read().rstrip("\r\n")


def loaded_secret(password: SecretStr | None, password_file: str | None) -> str | None:
    """The secret of a `password` / `password_file` pair as it is now: kept by the model, so
    that a reload compares what was read then with what is read now."""
    if password is not None and password_file is not None:
        raise ValueError("give password or password_file, not both")
    if password_file is not None:
        return read_password(password_file)
    return None if password is None else password.get_secret_value()


def readable_file(value: str) -> str:
    """A certificate or CA file: absolute, a regular file, readable, PEM."""
    if not PurePosixPath(value).is_absolute():
        raise ValueError(f"{value!r} must be an absolute path, e.g. /etc/routed/etcd-ca.pem")
    try:
        with open(value, "rb") as handle:
            head = handle.read(65536)
    except OSError as exc:
        raise ValueError(f"cannot read {value}: {exc.strerror}") from exc
    if b"-----BEGIN " not in head:
        raise ValueError(f"{value} is not a PEM file (no -----BEGIN line)")
    return value


def secret_file(value: str) -> str:
    """A private key: readable, and root's with mode 0600, as a password file."""
    readable_file(value)
    info = os.stat(value)
    if info.st_uid != 0 or info.st_mode & 0o077:
        raise ValueError(
            f"{value} is owned by uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):04o}; a key "
            f"file must be root's and 0600: chown root {value} && chmod 600 {value}"
        )
    return value
