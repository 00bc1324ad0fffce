"""The BFD session state machine (RFC 5880 §6.8, asynchronous mode, no echo, no demand).
Pure: a session is a frozen value, each function returns the next one; the caller owns the
clock, the sockets and the timers (it sends `packet(s)` every `tx_interval(s)`, jittered).

Slow start as BIRD and FRR do it: a session not Up sends at most once a second (§6.8.3);
once Up it moves to the configured interval with a Poll sequence (§6.5), so both sides agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from routed.bfd.packet import AuthType, Diag, Packet, State

SLOW_US = 1_000_000  # §6.8.3: DesiredMinTxInterval while not Up, at least one second


@dataclass(frozen=True, slots=True)
class Session:
    local_discr: int
    interval_us: int  # what we want once Up: desired min TX and required min RX
    multiplier: int
    state: State = State.DOWN
    diag: Diag = Diag.NONE
    remote_discr: int = 0
    remote_state: State = State.DOWN
    remote_min_rx_us: int = 1  # §6.8.1: initialised to 1
    remote_desired_tx_us: int = 0
    remote_mult: int = 0
    desired_tx_us: int = SLOW_US  # what we advertise now
    polling: bool = False  # a Poll sequence is under way: our packets carry P until an F comes
    last_rx: float | None = None  # when the last valid packet arrived (monotonic seconds)
    # §6.8.1, authenticated sessions: the sequence number we send next, the last we accepted
    xmit_auth_seq: int = 0
    rcv_auth_seq: int = 0
    auth_seq_known: bool = False

    @property
    def required_rx_us(self) -> int:
        return self.interval_us


def packet(s: Session, final: bool = False) -> Packet:
    """Our next control packet. The C bit says our forwarding does not share fate with the
    control plane: routed's restarts do not stop BFD (RFC 5882 §4.3, with graceful restart)."""
    return Packet(
        state=s.state,
        my_discriminator=s.local_discr,
        your_discriminator=s.remote_discr,
        detect_mult=s.multiplier,
        desired_min_tx_us=s.desired_tx_us,
        required_min_rx_us=s.required_rx_us,
        diag=s.diag,
        poll=s.polling and not final,
        final=final,
        control_plane_independent=True,
    )


def tx_interval(s: Session) -> float:
    """Seconds between our packets, before jitter (§6.8.7)."""
    return max(s.desired_tx_us, s.remote_min_rx_us) / 1e6


def detection_time(s: Session) -> float | None:
    """Seconds without a packet after which the session is down (§6.8.4), once the peer spoke."""
    if not s.remote_mult:
        return None
    return s.remote_mult * max(s.required_rx_us, s.remote_desired_tx_us) / 1e6


def sent(s: Session) -> Session:
    """After each packet sent: the next sequence number (every packet, which the meticulous
    types require and the others allow, §6.7.3)."""
    return dataclasses.replace(s, xmit_auth_seq=(s.xmit_auth_seq + 1) % 2**32)


def sequence_ok(s: Session, p: Packet) -> bool:
    """Whether an authenticated packet's sequence number may be accepted (§6.7.3, §6.7.4): within
    3 x Detect Mult after the last one accepted, circularly; never the same one again when
    meticulous (a replayed packet)."""
    if p.auth is None or not s.auth_seq_known or p.auth.type is AuthType.SIMPLE:
        return True
    ahead = (p.auth.sequence - s.rcv_auth_seq) % 2**32
    lowest = 1 if p.auth.type.meticulous else 0
    return lowest <= ahead <= 3 * p.detect_mult


def receive(s: Session, p: Packet, now: float) -> tuple[Session, bool]:
    """A valid packet for this session (§6.8.6; authenticated and `sequence_ok` if the session
    is): the next session, and whether to answer at once with the Final bit (the peer polls)."""
    if s.state is State.ADMIN_DOWN:
        return s, False
    if p.auth is not None and p.auth.type is not AuthType.SIMPLE:
        s = dataclasses.replace(s, rcv_auth_seq=p.auth.sequence, auth_seq_known=True)
    s = dataclasses.replace(
        s,
        remote_discr=p.my_discriminator,
        remote_state=p.state,
        remote_min_rx_us=p.required_min_rx_us,
        remote_desired_tx_us=p.desired_min_tx_us,
        remote_mult=p.detect_mult,
        last_rx=now,
        polling=s.polling and not p.final,
    )
    if p.state is State.ADMIN_DOWN:
        if s.state is not State.DOWN:
            s = _to(s, State.DOWN, Diag.NEIGHBOR_DOWN)
    elif s.state is State.DOWN:
        if p.state is State.DOWN:
            s = _to(s, State.INIT, Diag.NONE)
        elif p.state is State.INIT:
            s = _to(s, State.UP, Diag.NONE)
    elif s.state is State.INIT:
        if p.state in (State.INIT, State.UP):
            s = _to(s, State.UP, Diag.NONE)
    elif p.state is State.DOWN:  # we are Up
        s = _to(s, State.DOWN, Diag.NEIGHBOR_DOWN)
    return s, p.poll


def expires_at(s: Session) -> float | None:
    """When the session goes down unless a packet comes first (Init or Up, the peer heard)."""
    limit = detection_time(s)
    if s.state not in (State.INIT, State.UP) or limit is None or s.last_rx is None:
        return None
    return s.last_rx + limit


def expire(s: Session, now: float) -> Session:
    """Down with diagnostic 1 once the detection time has passed without a packet (§6.8.4);
    the peer's sequence numbers forgotten after twice that (§6.8.1, bfd.AuthSeqKnown)."""
    limit, last = detection_time(s), s.last_rx
    if limit is None or last is None:
        return s
    if s.auth_seq_known and now - last > 2 * limit:
        s = dataclasses.replace(s, auth_seq_known=False)
    down_at = expires_at(s)
    if down_at is None or now <= down_at:
        return s
    return dataclasses.replace(_to(s, State.DOWN, Diag.DETECTION_TIME_EXPIRED), remote_discr=0)


def admin_down(s: Session) -> Session:
    return _to(s, State.ADMIN_DOWN, Diag.ADMIN_DOWN)


def _to(s: Session, state: State, diag: Diag) -> Session:
    """Enter a state; Up switches to the configured interval with a Poll sequence, leaving Up
    goes back to one packet a second (§6.8.3)."""
    if state is State.UP and s.state is not State.UP:
        return dataclasses.replace(s, state=state, diag=diag, desired_tx_us=s.interval_us, polling=True)
    if state is not State.UP and s.state is State.UP:
        return dataclasses.replace(s, state=state, diag=diag, desired_tx_us=SLOW_US, polling=False)
    return dataclasses.replace(s, state=state, diag=diag)
