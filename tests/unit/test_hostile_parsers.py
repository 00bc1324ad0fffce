"""Property tests: the API request parser and the ExaBGP message decoder take any input and
either return their result or refuse it in their documented way, never crash."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgp.exabgp.messages import MessageError, parse_line
from routed.apiserver import parse_request
from routed.bfd import packet as bfd

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


# no per-example deadline: the suite runs these beside lab tests on a busy machine, where a
# slow example is the scheduler's doing, not the parser's (a crash still fails at once)
UNHURRIED = settings(deadline=None)


@UNHURRIED
@given(st.binary(max_size=512))
def test_any_bytes_are_a_request_or_a_reason(line: bytes) -> None:
    parsed = parse_request(line)
    assert isinstance(parsed, str) or isinstance(parsed.get("op"), str)


@UNHURRIED
@given(JSON)
def test_any_json_is_a_request_or_a_reason(value: Any) -> None:
    parsed = parse_request(json.dumps(value).encode())
    if isinstance(value, dict) and isinstance(value.get("op"), str):
        assert parsed == value
    else:
        assert isinstance(parsed, str) and parsed.startswith("bad request")


def test_deep_nesting_is_refused_not_a_crash() -> None:
    assert parse_request(b"[" * 100_000) == "bad request: not JSON"


def decode(line: str) -> None:
    with contextlib.suppress(MessageError):  # the documented refusal: logged, the line dropped
        parse_line(line)


@UNHURRIED
@given(st.text(max_size=512))
def test_any_text_from_exabgp_is_decoded_or_refused(line: str) -> None:
    decode(line)


# ExaBGP-shaped messages with arbitrary values where the decoder expects particular ones
SHAPED = st.fixed_dictionaries(
    {
        "exabgp": st.just("5.0.0"),
        "type": st.sampled_from(["update", "state", "open", "notification", "eor", "keepalive", "x"]),
        "neighbor": st.fixed_dictionaries(
            {
                "address": st.fixed_dictionaries(
                    {"local": JSON, "peer": st.sampled_from(["10.0.0.1", "x", 5])}
                ),
                "asn": st.fixed_dictionaries({"local": JSON, "peer": JSON}),
                "state": JSON,
                "message": st.one_of(
                    JSON,
                    st.fixed_dictionaries(
                        {
                            "update": st.fixed_dictionaries(
                                {
                                    "attribute": st.dictionaries(
                                        st.sampled_from(
                                            [
                                                "origin",
                                                "as-path",
                                                "local-preference",
                                                "med",
                                                "community",
                                                "originator-id",
                                                "cluster-list",
                                            ]
                                        ),
                                        JSON,
                                    ),
                                    "announce": st.dictionaries(
                                        st.sampled_from(["ipv4 unicast", "ipv6 unicast", "x"]),
                                        st.dictionaries(
                                            st.sampled_from(["10.0.0.9", "fd00::1", "y"]),
                                            st.lists(JSON, max_size=3),
                                        ),
                                    ),
                                    "withdraw": st.dictionaries(
                                        st.sampled_from(["ipv4 unicast", "z"]), st.lists(JSON, max_size=3)
                                    ),
                                }
                            )
                        }
                    ),
                ),
            }
        ),
    }
)


@settings(max_examples=300, deadline=None)
@given(SHAPED)
def test_exabgp_shaped_messages_with_hostile_values_are_decoded_or_refused(message: dict[str, Any]) -> None:
    decode(json.dumps(message))


def test_a_one_megabyte_line_is_refused() -> None:
    with pytest.raises(MessageError):
        parse_line('{"exabgp": "5.0.0", "type": "update", "x": "' + "a" * (1 << 20) + '"}')


BFD_KEYS = [None, *(bfd.Key(kind, 1, b"secret") for kind in bfd.AuthType if kind is not bfd.AuthType.NONE)]


@UNHURRIED
@given(st.binary(max_size=96), st.sampled_from(BFD_KEYS))
def test_any_bytes_are_a_bfd_packet_or_a_discard(data: bytes, key: bfd.Key | None) -> None:
    """What a UDP socket on port 3784 may be sent: decoded or refused with the rule it broke,
    and a decoded one's authentication judged without raising."""
    try:
        packet = bfd.decode(data)
    except bfd.PacketError:
        return
    reason = bfd.check_auth(data, packet, key)
    assert reason is None or isinstance(reason, str)
    if reason is None and key is not None and key.type is not bfd.AuthType.SIMPLE:
        raise AssertionError(f"random bytes passed {key.type.name}: {data!r}")  # a digest forged by chance


@UNHURRIED
@given(
    st.binary(min_size=1, max_size=48), st.integers(0, 2**32 - 1), st.sampled_from(BFD_KEYS[2:])
)  # keyed: integrity
def test_a_signed_bfd_packet_checks_and_any_changed_byte_breaks_it(
    noise: bytes, sequence: int, key: bfd.Key
) -> None:
    wire = bfd.Packet(bfd.State.UP, 7, 9, 3, 50_000, 50_000).encode(key, sequence)
    assert bfd.check_auth(wire, bfd.decode(wire), key) is None
    position = noise[0] % len(wire)
    changed = wire[:position] + bytes([wire[position] ^ (noise[-1] or 1)]) + wire[position + 1 :]
    with contextlib.suppress(bfd.PacketError):
        assert bfd.check_auth(changed, bfd.decode(changed), key) is not None
