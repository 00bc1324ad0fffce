"""BFD control packets (RFC 5880 §4.1): encode and decode, with the checks of §6.8.6 that need
nothing but the packet, and the authentication section (§4.2-4.4, §6.7): simple password,
keyed and meticulous keyed MD5 and SHA1. Pure."""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum

VERSION = 1
HEADER = struct.Struct("!BBBBIIIII")  # 24 bytes, the mandatory section
FLAG_POLL, FLAG_FINAL, FLAG_CPI, FLAG_AUTH, FLAG_DEMAND, FLAG_MULTIPOINT = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01


class State(IntEnum):
    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


class Diag(IntEnum):
    NONE = 0
    DETECTION_TIME_EXPIRED = 1
    ECHO_FAILED = 2
    NEIGHBOR_DOWN = 3
    FORWARDING_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMIN_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8


class AuthType(IntEnum):
    NONE = 0
    SIMPLE = 1
    KEYED_MD5 = 2
    METICULOUS_KEYED_MD5 = 3
    KEYED_SHA1 = 4
    METICULOUS_KEYED_SHA1 = 5

    @property
    def meticulous(self) -> bool:
        return self in (AuthType.METICULOUS_KEYED_MD5, AuthType.METICULOUS_KEYED_SHA1)

    @property
    def digest_size(self) -> int:
        """Bytes of digest a keyed type carries, the longest password it can hold (0: simple)."""
        if self in (AuthType.KEYED_MD5, AuthType.METICULOUS_KEYED_MD5):
            return 16
        if self in (AuthType.KEYED_SHA1, AuthType.METICULOUS_KEYED_SHA1):
            return 20
        return 0

    @property
    def max_secret(self) -> int:
        return self.digest_size or 16  # a simple password is 1-16 bytes (§4.2)


KEYED = struct.Struct("!BBBBI")  # type, length, key id, reserved, sequence (§4.3, §4.4)


@dataclass(frozen=True, slots=True)
class Key:
    """What both ends of an authenticated session are configured with."""

    type: AuthType
    key_id: int
    secret: bytes


@dataclass(frozen=True, slots=True)
class AuthSection:
    """A received packet's authentication section, not yet checked (see `check_auth`)."""

    type: AuthType
    key_id: int
    sequence: int  # 0 for a simple password
    offset: int  # where in the packet the password or digest starts
    value: bytes  # the password or the digest


class PacketError(ValueError):
    """A packet §6.8.6 says to discard; the message says which rule."""


@dataclass(frozen=True, slots=True)
class Packet:
    state: State
    my_discriminator: int
    your_discriminator: int
    detect_mult: int
    desired_min_tx_us: int
    required_min_rx_us: int
    required_min_echo_rx_us: int = 0
    diag: Diag = Diag.NONE
    poll: bool = False
    final: bool = False
    control_plane_independent: bool = False
    demand: bool = False
    auth: AuthSection | None = None  # as received; encode() takes the key instead

    def encode(self, key: Key | None = None, sequence: int = 0) -> bytes:
        """The packet, signed with `key` (its sequence number `sequence`) if given."""
        flags = (
            (FLAG_POLL if self.poll else 0)
            | (FLAG_FINAL if self.final else 0)
            | (FLAG_CPI if self.control_plane_independent else 0)
            | (FLAG_DEMAND if self.demand else 0)
            | (FLAG_AUTH if key else 0)
        )
        section = b""
        if key is not None and key.type is AuthType.SIMPLE:
            section = bytes((key.type, 3 + len(key.secret), key.key_id)) + key.secret
        elif key is not None:
            size = key.type.digest_size
            # §6.7.3/6.7.4: the digest is computed with the secret, zero-padded, in its place
            section = KEYED.pack(key.type, KEYED.size + size, key.key_id, 0, sequence) + _padded(key, size)
        header = HEADER.pack(
            (VERSION << 5) | int(self.diag),
            (int(self.state) << 6) | flags,
            self.detect_mult,
            HEADER.size + len(section),
            self.my_discriminator,
            self.your_discriminator,
            self.desired_min_tx_us,
            self.required_min_rx_us,
            self.required_min_echo_rx_us,
        )
        if key is None or key.type is AuthType.SIMPLE:
            return header + section
        unsigned = header + section
        return unsigned[: -key.type.digest_size] + _digest(key.type, unsigned)


def _padded(key: Key, size: int) -> bytes:
    return key.secret.ljust(size, b"\0")


def _digest(kind: AuthType, data: bytes) -> bytes:
    return (hashlib.md5 if kind.digest_size == 16 else hashlib.sha1)(data).digest()


def check_auth(data: bytes, packet: Packet, key: Key | None) -> str | None:
    """Why a decoded packet fails this session's authentication (§6.7), or None when it passes.
    The sequence number is the session's to judge (`session.sequence_ok`)."""
    section = packet.auth
    if key is None:
        return None if section is None else "authenticated packet for a session without authentication"
    if section is None:
        return "packet without authentication for a session that requires it"
    if section.type is not key.type:
        return f"authentication type {section.type.name.lower()}, configured {key.type.name.lower()}"
    if section.key_id != key.key_id:
        return f"key id {section.key_id}, configured {key.key_id}"
    if key.type is AuthType.SIMPLE:
        return None if hmac.compare_digest(section.value, key.secret) else "wrong password"
    signed = data[: section.offset] + _padded(key, key.type.digest_size)  # the digest ends the packet
    return None if hmac.compare_digest(section.value, _digest(key.type, signed)) else "wrong digest"


def decode(data: bytes) -> Packet:
    """A packet, or PacketError naming the §6.8.6 rule it breaks. An authentication section
    is parsed (well formed or refused) but not checked: see `check_auth`."""
    if len(data) < HEADER.size:
        raise PacketError(f"{len(data)} bytes, shorter than the 24 of a control packet")
    first, second, mult, length, mine, yours, tx, rx, echo = HEADER.unpack_from(data)
    if first >> 5 != VERSION:
        raise PacketError(f"version {first >> 5}, not 1")
    if length < HEADER.size or length > len(data):
        raise PacketError(f"length field {length} does not fit the {len(data)} bytes received")
    auth = _auth_section(data[:length]) if second & FLAG_AUTH else None
    if mult == 0:
        raise PacketError("detect multiplier 0")
    if second & FLAG_MULTIPOINT:
        raise PacketError("multipoint bit set")
    if mine == 0:
        raise PacketError("my discriminator 0")
    state = State(second >> 6)
    if yours == 0 and state not in (State.DOWN, State.ADMIN_DOWN):
        raise PacketError(f"your discriminator 0 in state {state.name}")
    diag = first & 0x1F
    return Packet(
        state=state,
        my_discriminator=mine,
        your_discriminator=yours,
        detect_mult=mult,
        desired_min_tx_us=tx,
        required_min_rx_us=rx,
        required_min_echo_rx_us=echo,
        diag=Diag(diag) if diag in Diag._value2member_map_ else Diag.NONE,
        poll=bool(second & FLAG_POLL),
        final=bool(second & FLAG_FINAL),
        control_plane_independent=bool(second & FLAG_CPI),
        demand=bool(second & FLAG_DEMAND),
        auth=auth,
    )


def _auth_section(data: bytes) -> AuthSection:
    if len(data) < HEADER.size + 3:
        raise PacketError("A bit set without an authentication section")
    kind, size, key_id = data[HEADER.size : HEADER.size + 3]
    if kind not in AuthType._value2member_map_ or kind == AuthType.NONE:
        raise PacketError(f"authentication type {kind} is not defined")
    auth = AuthType(kind)
    if HEADER.size + size != len(data):
        raise PacketError(f"authentication length {size} does not fit the packet's {len(data)} bytes")
    if auth is AuthType.SIMPLE:
        if not 4 <= size <= 19:
            raise PacketError(f"simple password section of {size} bytes, not 4-19")
        return AuthSection(auth, key_id, 0, HEADER.size + 3, data[HEADER.size + 3 :])
    if size != KEYED.size + auth.digest_size:
        raise PacketError(f"{auth.name.lower()} section of {size} bytes, not {KEYED.size + auth.digest_size}")
    sequence = KEYED.unpack_from(data, HEADER.size)[4]
    return AuthSection(auth, key_id, sequence, HEADER.size + KEYED.size, data[HEADER.size + KEYED.size :])
