from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from routed.ipam import NotInPool, PoolExhausted, allocate, check_requested

V4 = ip_network("10.65.0.0/30")
V4B = ip_network("10.66.0.0/31")
V6 = ip_network("fd00:65::/126")


def test_first_free_skips_network_address() -> None:
    assert allocate([V4], set(), 4) == ip_address("10.65.0.1")


def test_fills_gaps_then_moves_to_next_pool() -> None:
    assert allocate([V4, V4B], {ip_address("10.65.0.2")}, 4) == ip_address("10.65.0.1")
    used = {ip_address("10.65.0.1"), ip_address("10.65.0.2")}
    # /31: both addresses usable (RFC 3021)
    assert allocate([V4, V4B], used, 4) == ip_address("10.66.0.0")


def test_exhausted() -> None:
    used = {ip_address("10.65.0.1"), ip_address("10.65.0.2")}
    with pytest.raises(PoolExhausted, match="every IPv4 pool is full"):
        allocate([V4], used, 4)


def test_ipv6_skips_anycast() -> None:
    assert allocate([V4, V6], set(), 6) == ip_address("fd00:65::1")


def test_no_pool_of_family() -> None:
    with pytest.raises(NotInPool, match="no IPv6 pool"):
        allocate([V4], set(), 6)


def test_check_requested() -> None:
    check_requested(ip_address("10.65.0.2"), [V4], set())
    with pytest.raises(NotInPool, match="outside every pool"):
        check_requested(ip_address("10.70.0.1"), [V4], set())
    with pytest.raises(NotInPool, match="reserved"):
        check_requested(ip_address("10.65.0.3"), [V4], set())
    with pytest.raises(NotInPool, match="already in use"):
        check_requested(ip_address("10.65.0.2"), [V4], {ip_address("10.65.0.2")})
