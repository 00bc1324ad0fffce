"""BFD control packets (RFC 5880 §4.1): encode and decode, with the checks of §6.8.6 that need
nothing but the packet. Pure."""

from __future__ import annotations

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

    def encode(self) -> bytes:
        flags = (
            (FLAG_POLL if self.poll else 0)
            | (FLAG_FINAL if self.final else 0)
            | (FLAG_CPI if self.control_plane_independent else 0)
            | (FLAG_DEMAND if self.demand else 0)
        )
        return HEADER.pack(
            (VERSION << 5) | int(self.diag),
            (int(self.state) << 6) | flags,
            self.detect_mult,
            HEADER.size,
            self.my_discriminator,
            self.your_discriminator,
            self.desired_min_tx_us,
            self.required_min_rx_us,
            self.required_min_echo_rx_us,
        )


def decode(data: bytes) -> Packet:
    """A packet, or PacketError naming the §6.8.6 rule it breaks. Authentication is not
    supported: a packet with the A bit is refused (sessions here are not configured for it)."""
    if len(data) < HEADER.size:
        raise PacketError(f"{len(data)} bytes, shorter than the 24 of a control packet")
    first, second, mult, length, mine, yours, tx, rx, echo = HEADER.unpack_from(data)
    if first >> 5 != VERSION:
        raise PacketError(f"version {first >> 5}, not 1")
    if length < HEADER.size or length > len(data):
        raise PacketError(f"length field {length} does not fit the {len(data)} bytes received")
    if second & FLAG_AUTH:
        raise PacketError("authenticated packet for a session without authentication")
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
    )
