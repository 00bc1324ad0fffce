"""BFD's packet codec and session state machine (RFC 5880), without sockets."""

from __future__ import annotations

import dataclasses

import pytest

from routed.bfd.packet import Diag, Packet, PacketError, State, decode
from routed.bfd.session import (
    SLOW_US,
    Session,
    admin_down,
    detection_time,
    expire,
    packet,
    receive,
    tx_interval,
)

FAST = 50_000  # 50 ms


def pair() -> tuple[Session, Session]:
    return Session(local_discr=11, interval_us=FAST, multiplier=3), Session(
        local_discr=22, interval_us=FAST, multiplier=3
    )


def exchange(a: Session, b: Session, now: float) -> tuple[Session, Session]:
    """a sends to b, b to a, each packet through the wire format; Finals answered at once."""
    b, b_final = receive(b, decode(packet(a).encode()), now)
    a, a_final = receive(a, decode(packet(b).encode()), now)
    if b_final:
        a, _ = receive(a, decode(packet(b, final=True).encode()), now)
    if a_final:
        b, _ = receive(b, decode(packet(a, final=True).encode()), now)
    return a, b


def test_packets_round_trip() -> None:
    p = Packet(
        State.UP, 7, 9, 3, 50_000, 50_000, 0, Diag.NEIGHBOR_DOWN, poll=True, control_plane_independent=True
    )
    assert decode(p.encode()) == p
    assert len(p.encode()) == 24


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda b: b[:20], "shorter"),
        (lambda b: bytes([0x40]) + b[1:], "version 2"),
        (lambda b: b[:3] + bytes([40]) + b[4:], "length field"),
        (lambda b: b[:1] + bytes([b[1] | 0x04]) + b[2:], "authenticated"),
        (lambda b: b[:2] + bytes([0]) + b[3:], "multiplier 0"),
        (lambda b: b[:1] + bytes([b[1] | 0x01]) + b[2:], "multipoint"),
        (lambda b: b[:4] + bytes(4) + b[8:], "my discriminator 0"),
        (lambda b: b[:8] + bytes(4) + b[12:], "your discriminator 0 in state UP"),
    ],
)
def test_packets_section_6_8_6_discards(mutate, needle) -> None:  # type: ignore[no-untyped-def]
    good = Packet(State.UP, 7, 9, 3, 50_000, 50_000).encode()
    with pytest.raises(PacketError, match=needle):
        decode(mutate(good))


def test_three_way_handshake_then_fast_with_a_poll_sequence() -> None:
    a, b = pair()
    assert tx_interval(a) == 1.0  # slow until Up
    b, _ = receive(b, decode(packet(a).encode()), 0.0)
    assert b.state is State.INIT
    a, _ = receive(a, decode(packet(b).encode()), 0.0)
    assert a.state is State.UP and a.polling and a.desired_tx_us == FAST
    b, must_answer = receive(b, decode(packet(a).encode()), 0.0)
    assert b.state is State.UP and must_answer  # a polls: b answers with F
    a, _ = receive(a, decode(packet(b, final=True).encode()), 0.0)
    assert not a.polling
    a, b = exchange(a, b, 0.01)
    assert not a.polling and not b.polling
    assert tx_interval(a) == tx_interval(b) == 0.05
    assert detection_time(a) == pytest.approx(0.15)


def up_pair() -> tuple[Session, Session]:
    a, b = pair()
    for step in range(4):
        a, b = exchange(a, b, step * 0.01)
    assert a.state is b.state is State.UP
    return a, b


def test_silence_past_the_detection_time_is_down() -> None:
    a, _ = up_pair()
    assert expire(a, 0.03 + 0.149).state is State.UP
    down = expire(a, 0.03 + 0.151)
    assert (down.state, down.diag, down.remote_discr) == (State.DOWN, Diag.DETECTION_TIME_EXPIRED, 0)
    assert down.desired_tx_us == SLOW_US  # back to one a second


def test_the_peer_saying_down_or_admin_down_takes_us_down() -> None:
    a, b = up_pair()
    b_down = dataclasses.replace(b, state=State.DOWN)
    a2, _ = receive(a, packet(b_down), 1.0)
    assert (a2.state, a2.diag) == (State.DOWN, Diag.NEIGHBOR_DOWN)
    a3, _ = receive(a, packet(admin_down(b)), 1.0)
    assert (a3.state, a3.diag) == (State.DOWN, Diag.NEIGHBOR_DOWN)
    # and it comes back up through Init
    again, b = exchange(a3, dataclasses.replace(b, state=State.DOWN, remote_discr=0), 2.0)
    assert again.state in (State.INIT, State.UP)


def test_admin_down_ignores_what_arrives() -> None:
    a, b = up_pair()
    quiet = admin_down(a)
    assert receive(quiet, packet(b), 1.0) == (quiet, False)
    assert packet(quiet).state is State.ADMIN_DOWN and packet(quiet).diag is Diag.ADMIN_DOWN
