"""BFD's packet codec and session state machine (RFC 5880), without sockets."""

from __future__ import annotations

import dataclasses

import pytest

from routed.bfd.packet import AuthType, Diag, Key, Packet, PacketError, State, check_auth, decode
from routed.bfd.session import (
    SLOW_US,
    Session,
    admin_down,
    detection_time,
    expire,
    expires_at,
    packet,
    receive,
    sent,
    sequence_ok,
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
        (lambda b: b[:1] + bytes([b[1] | 0x04]) + b[2:], "without an authentication section"),
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


KEYS = [
    Key(AuthType.SIMPLE, 3, b"s3cret"),
    Key(AuthType.KEYED_MD5, 1, b"s3cret"),
    Key(AuthType.METICULOUS_KEYED_MD5, 2, b"0123456789abcdef"),
    Key(AuthType.KEYED_SHA1, 1, b"s3cret"),
    Key(AuthType.METICULOUS_KEYED_SHA1, 255, b"0123456789abcdefghij"),
]


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.type.name.lower())
def test_every_auth_type_signs_and_checks(key: Key) -> None:
    wire = Packet(State.UP, 7, 9, 3, FAST, FAST).encode(key, 41)
    received = decode(wire)
    assert received.auth is not None and received.auth.key_id == key.key_id
    assert received.auth.sequence == (0 if key.type is AuthType.SIMPLE else 41)
    assert check_auth(wire, received, key) is None
    wrong_secret = dataclasses.replace(key, secret=b"other")
    assert check_auth(wire, received, wrong_secret) in ("wrong password", "wrong digest")
    assert "key id" in str(
        check_auth(wire, received, dataclasses.replace(key, key_id=(key.key_id + 1) % 256))
    )
    assert check_auth(wire, received, None) == "authenticated packet for a session without authentication"
    plain = Packet(State.UP, 7, 9, 3, FAST, FAST).encode()
    assert (
        check_auth(plain, decode(plain), key)
        == "packet without authentication for a session that requires it"
    )


@pytest.mark.parametrize("key", KEYS[1:], ids=lambda k: k.type.name.lower())
def test_a_changed_byte_breaks_the_digest(key: Key) -> None:
    wire = bytearray(Packet(State.UP, 7, 9, 3, FAST, FAST).encode(key, 5))
    wire[2] = 4  # the detect multiplier: a forged packet asking for a longer detection time
    assert check_auth(bytes(wire), decode(bytes(wire)), key) == "wrong digest"
    other = Key(AuthType.KEYED_SHA1 if key.type.digest_size == 16 else AuthType.KEYED_MD5, key.key_id, b"x")
    assert "authentication type" in str(check_auth(bytes(wire), decode(bytes(wire)), other))


def test_the_md5_digest_is_rfc_5880s() -> None:
    """§6.7.3 computed by hand: the packet with the zero-padded key in the digest's place."""
    import hashlib
    import struct

    key = Key(AuthType.KEYED_MD5, 1, b"key")
    wire = Packet(State.DOWN, 7, 0, 3, 1_000_000, 1_000_000).encode(key, 1)
    header = struct.pack("!BBBBIIIII", 0x20, 0x44 | 0x04, 3, 48, 7, 0, 1_000_000, 1_000_000, 0)
    section = struct.pack("!BBBBI", 2, 24, 1, 0, 1)
    assert wire == header + section + hashlib.md5(header + section + b"key".ljust(16, b"\0")).digest()


@pytest.mark.parametrize(
    ("malformed", "needle"),
    [
        (lambda b: b[:3] + bytes([30]) + b[4:25] + bytes([6]) + b[26:30], "section of 6 bytes, not 24"),
        (lambda b: b[:24] + bytes([9]) + b[25:], "type 9 is not defined"),
        (lambda b: b[:25] + bytes([30]) + b[26:], "authentication length 30"),
    ],
)
def test_malformed_auth_sections_are_refused(malformed, needle) -> None:  # type: ignore[no-untyped-def]
    good = Packet(State.UP, 7, 9, 3, FAST, FAST).encode(KEYS[1], 1)
    with pytest.raises(PacketError, match=needle):
        decode(malformed(good))


def test_sequence_numbers_window_replay_and_wrap() -> None:
    key, meticulous = KEYS[1], KEYS[2]
    s = Session(local_discr=1, interval_us=FAST, multiplier=3)

    def signed(k: Key, seq: int) -> Packet:
        return decode(Packet(State.DOWN, 9, 0, 3, FAST, FAST).encode(k, seq))

    assert sequence_ok(s, signed(key, 123456))  # the first one seen: any
    s, _ = receive(s, signed(key, 2**32 - 2), 0.0)
    assert s.auth_seq_known and s.rcv_auth_seq == 2**32 - 2
    assert sequence_ok(s, signed(key, 2**32 - 2))  # keyed: the same again is allowed
    assert not sequence_ok(s, signed(meticulous, 2**32 - 2))  # meticulous: a replay
    assert sequence_ok(s, signed(meticulous, 6))  # 2**32-2 + 8 wraps to 6: within 3 x 3
    assert sequence_ok(s, signed(key, 7)) and not sequence_ok(s, signed(key, 8))  # 9 ahead, 10 ahead
    assert not sequence_ok(s, signed(key, 2**32 - 3))  # behind
    # twice the detection time without a packet: any number is taken again (§6.8.1)
    limit = detection_time(s)
    assert limit is not None
    assert expire(s, 1.9 * limit).auth_seq_known
    assert not expire(s, 2.1 * limit).auth_seq_known


def test_sent_counts_sequence_numbers_around_the_circle() -> None:
    s = Session(local_discr=1, interval_us=FAST, multiplier=3, xmit_auth_seq=2**32 - 1)
    assert sent(s).xmit_auth_seq == 0 and sent(sent(s)).xmit_auth_seq == 1


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.type.name.lower())
def test_authenticated_sessions_come_up(key: Key) -> None:
    a, b = pair()
    a, b = dataclasses.replace(a, xmit_auth_seq=2**32 - 3), dataclasses.replace(b, xmit_auth_seq=10)

    def wire(s: Session, final: bool = False) -> Packet:
        return decode(packet(s, final).encode(key, s.xmit_auth_seq))

    for step in range(8):
        pa, pb = wire(a), wire(b)
        assert sequence_ok(b, pa) and sequence_ok(a, pb)
        b, b_final = receive(b, pa, step * 0.05)
        a, a_final = receive(a, pb, step * 0.05)
        a, b = sent(a), sent(b)
        if b_final:
            a, _ = receive(a, wire(b, final=True), step * 0.05)
            b = sent(b)
        if a_final:
            b, _ = receive(b, wire(a, final=True), step * 0.05)
            a = sent(a)
    assert (a.state, b.state) == (State.UP, State.UP)
    assert not a.polling and not b.polling


def test_expires_at_is_the_last_packet_plus_the_detection_time() -> None:
    a, b = pair()
    assert expires_at(a) is None  # nothing heard: nothing to lose
    b, _ = receive(b, decode(packet(a).encode()), 10.0)
    limit = detection_time(b)
    assert b.state is State.INIT and limit is not None
    assert expires_at(b) == 10.0 + limit
    assert expire(b, 10.0 + limit).state is State.INIT and expire(b, 10.001 + limit).state is State.DOWN
    assert expires_at(expire(b, 10.001 + limit)) is None
