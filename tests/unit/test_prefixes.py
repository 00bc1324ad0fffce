"""Fast prefixes are the same values as ipaddress's: equal, same hash, same behaviour."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from bgp import prefixes

SAMPLES = ["10.65.1.7/32", "10.0.0.0/8", "0.0.0.0/0", "fd00:65::1/128", "fd00::/8", "::/0", "192.0.2.0/24"]


@pytest.mark.parametrize("text", SAMPLES)
def test_same_value_as_ipaddress(text: str) -> None:
    fast, slow = prefixes.parse(text), ip_network(text)
    assert fast == slow and slow == fast
    assert hash(fast) == hash(slow)
    assert {slow: 1}[fast] == 1 and {fast: 1}[slow] == 1
    assert str(fast) == text and fast.prefixlen == slow.prefixlen and fast.version == slow.version
    assert fast.network_address == slow.network_address and fast.netmask == slow.netmask
    assert fast.broadcast_address == slow.broadcast_address
    assert fast.subnet_of(ip_network("::/0" if slow.version == 6 else "0.0.0.0/0"))  # type: ignore[arg-type]
    assert sorted([fast, slow]) == [slow, slow]
    if slow.prefixlen:
        parent = fast.supernet()
        assert parent == slow.supernet() and hash(parent) == hash(slow.supernet())


def test_from_packed_and_bare_address() -> None:
    assert prefixes.from_packed(bytes([10, 65, 1, 0]), 24) == ip_network("10.65.1.0/24")
    assert prefixes.from_packed(bytes(16), 0) == ip_network("::/0")
    assert prefixes.parse("10.1.2.3") == ip_network("10.1.2.3/32")
    assert ip_network("10.65.1.7/32") in {prefixes.parse("10.65.1.7/32")}


@pytest.mark.parametrize(
    "text", ["10.0.0.1/24", "10.0.0.0/33", "fd00::1/64", "10.0.0/8", "nonsense", "10.0.0.0/x", "::/129", ""]
)
def test_rejects_what_ip_network_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        ip_network(text)
    with pytest.raises(ValueError):
        prefixes.parse(text)


def test_from_packed_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        prefixes.from_packed(b"\x01\x02\x03", 8)
    with pytest.raises(ValueError):
        prefixes.from_packed(bytes(4), 40)


def test_equality_between_fast_prefixes() -> None:
    assert prefixes.parse("10.0.0.0/8") == prefixes.parse("10.0.0.0/8")
    assert prefixes.parse("10.0.0.0/8") != prefixes.parse("10.0.0.0/16")
    assert prefixes.parse("10.0.0.0/16") != prefixes.parse("10.1.0.0/16")
    assert prefixes.parse("10.0.0.0/8") != ip_network("::/8") and prefixes.parse("10.0.0.0/8") != "10.0.0.0/8"
