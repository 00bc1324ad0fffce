"""Max-prefix admission (bgp.limits, pure): warn keeps all, drop keeps the first N, teardown none."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_network

from bgp.limits import MaxPrefixAction, admit
from bgp.model import Attributes, IPNetwork
from routed.config.peering import MaxPrefixes

ATTRS = Attributes(next_hop=IPv4Address("10.0.0.31"))


def updates(first: int, count: int) -> list[tuple[IPNetwork, Attributes]]:
    return [(ip_network(f"10.65.{(i >> 8) & 255}.{i & 255}/32"), ATTRS) for i in range(first, first + count)]


def limit(action: MaxPrefixAction, n: int = 10) -> MaxPrefixes:
    return MaxPrefixes(limit=n, action=action)


def test_no_limit_or_under_it_keeps_everything() -> None:
    announced = updates(0, 10)
    assert admit(None, set(), announced).kept == tuple(announced)
    verdict = admit(limit(MaxPrefixAction.DROP), set(), announced)
    assert (len(verdict.kept), verdict.dropped, verdict.held, verdict.exceeded) == (10, 0, 10, False)


def test_warn_keeps_all_and_says_so() -> None:
    verdict = admit(limit(MaxPrefixAction.WARN), set(), updates(0, 25))
    assert (len(verdict.kept), verdict.dropped, verdict.held, verdict.exceeded) == (25, 0, 25, True)


def test_drop_keeps_the_first_n_and_updates_of_what_is_held() -> None:
    held = {p for p, _ in updates(0, 8)}
    announced = updates(5, 10)  # 5..7 held already, 8..14 new: room for 2
    verdict = admit(limit(MaxPrefixAction.DROP), held, announced)
    assert [str(p) for p, _ in verdict.kept] == [f"10.65.0.{i}/32" for i in range(5, 10)]
    assert (verdict.dropped, verdict.held, verdict.exceeded) == (5, 15, True)
    # the same prefix twice in one UPDATE takes one place
    verdict = admit(limit(MaxPrefixAction.DROP, 1), set(), updates(0, 1) * 2)
    assert (len(verdict.kept), verdict.dropped) == (2, 0)


def test_teardown_keeps_nothing_once_over() -> None:
    verdict = admit(limit(MaxPrefixAction.TEARDOWN), set(), updates(0, 11))
    assert (verdict.kept, verdict.exceeded, verdict.held) == ((), True, 11)
