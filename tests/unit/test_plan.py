"""The diff between desired routes and the kernel's: add, replace, delete, never foreign."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from routed.fib.plan import plan_routes
from routed.fib.routes import NextHop, Route, gateway_route, local_route

A = local_route(ip_network("10.65.0.1/32"), "rtaaaa")
B = gateway_route(ip_network("10.65.1.0/32"), (ip_address("10.0.0.12"),))
B2 = gateway_route(ip_network("10.65.1.0/32"), (ip_address("10.0.0.13"),))
C = gateway_route(ip_network("10.65.2.0/32"), (ip_address("10.0.0.12"), ip_address("10.0.0.13")))


def table(*routes: Route) -> dict:
    return {r.key: r for r in routes}


def test_add_missing() -> None:
    plan = plan_routes(table(A, B), {}, set())
    assert plan.add == (A, B) and not plan.replace and not plan.delete


def test_nothing_to_do_when_equal() -> None:
    assert plan_routes(table(A, B, C), table(A, B, C), set()).is_empty


def test_replace_changed_next_hop() -> None:
    plan = plan_routes(table(B2), table(B), set())
    assert plan.replace == (B2,) and not plan.add and not plan.delete


def test_delete_ours_not_desired() -> None:
    plan = plan_routes(table(A), table(A, B), set())
    assert plan.delete == (B,)


def test_foreign_prefix_is_a_conflict_not_an_add() -> None:
    plan = plan_routes(table(A, B), {}, {B.key})
    assert plan.add == (A,)
    assert plan.conflicts == (B,)


def test_foreign_routes_are_never_deleted() -> None:
    # A foreign route is not in `ours`, so no plan can name it for deletion.
    plan = plan_routes({}, {}, {A.key, B.key})
    assert plan.is_empty and not plan.conflicts


def test_stale_routes_kept_until_ready() -> None:
    plan = plan_routes(table(A), table(A, B), set(), allow_delete=False)
    assert plan.is_empty


def test_routes_withdrawn_in_this_run_go_before_ready() -> None:
    plan = plan_routes(table(A), table(A, B), set(), allow_delete=False, deletable={B.key})
    assert plan.delete == (B,)


def test_only_limits_the_scope() -> None:
    plan = plan_routes(table(A), table(B), set(), only={A.key})
    assert plan.add == (A,) and not plan.delete


def test_ecmp_order_does_not_matter() -> None:
    reversed_hops = Route(C.dst, tuple(reversed(C.nexthops)))
    assert reversed_hops == C
    assert plan_routes(table(reversed_hops), table(C), set()).is_empty


def test_next_hop_is_gateway_or_device() -> None:
    import pytest

    with pytest.raises(ValueError):
        NextHop()
    with pytest.raises(ValueError):
        NextHop(gateway=ip_address("10.0.0.1"), device="eth0")
