"""The reconciler against a real kernel: restores ours, never touches anyone else's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from routed.dataplane.workload import host_ifname
from tests.integration.conftest import Daemon, Host, Namespaces
from tests.netns import links, routes, sh, wait_until

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)


def route_of(netns: str, prefix: str, family: str = "-4") -> list[tuple[str, str]]:
    return sorted((r.get("protocol", ""), r.get("dev", "")) for r in routes(netns, prefix, family=family))


def full_resyncs(host: Host) -> int:
    return int(
        json.loads(host.routed("status", "--json", "-c", str(host.config)).stdout)["fib"]["full_resyncs"]
    )


def test_deleted_route_is_restored(host: Host, daemon: Daemon, namespaces: Namespaces) -> None:
    c1 = namespaces.add()
    host.routed("workload", "add", "w", "--netns", c1, "-c", str(host.config))
    sh(["ip", "-n", host.netns, "route", "del", "10.65.0.1/32"])
    wait_until(
        lambda: route_of(host.netns, "10.65.0.1"), [("routed", host_ifname("w"))], what="our route comes back"
    )
    assert "event=route_removed_externally prefix=10.65.0.1/32" in daemon.text()


def test_foreign_routes_survive(host: Host, daemon: Daemon, namespaces: Namespaces) -> None:
    # same prefix as a workload will get, and an unrelated one, both proto static
    sh(["ip", "-n", host.netns, "route", "add", "10.65.0.1/32", "dev", "fab0", "proto", "static"])
    sh(["ip", "-n", host.netns, "route", "add", "10.65.0.200/32", "via", "10.0.0.9", "proto", "static"])
    sh(["ip", "-n", host.netns, "route", "add", "10.77.0.0/16", "via", "10.0.0.9", "proto", "boot"])
    before = routes(host.netns)
    c1 = namespaces.add()
    host.routed("workload", "add", "w", "--netns", c1, "-c", str(host.config))
    assert "event=route_conflict prefix=10.65.0.1/32" in daemon.text()
    # let two full resyncs (interval 2 s) pass over the foreign routes
    resyncs = full_resyncs(host)
    wait_until(lambda: full_resyncs(host) >= resyncs + 2, timeout=15, what="two full resyncs")
    after = [r for r in routes(host.netns) if r.get("protocol") != "routed"]
    assert after == [r for r in before if r.get("protocol") != "routed"]
    # the static route for the workload's prefix still wins: ours was not installed over it
    assert route_of(host.netns, "10.65.0.1") == [("static", "fab0")]
    # once the admin removes theirs, ours is installed
    sh(["ip", "-n", host.netns, "route", "del", "10.65.0.1/32", "proto", "static"])
    wait_until(lambda: route_of(host.netns, "10.65.0.1"), [("routed", host_ifname("w"))])
    # and a foreign route with our prefix added later is left alone too (ours stays, theirs is kept)
    sh(
        [
            "ip",
            "-n",
            host.netns,
            "route",
            "add",
            "10.65.0.1/32",
            "dev",
            "fab0",
            "proto",
            "static",
            "metric",
            "50",
        ]
    )
    wait_until(
        lambda: route_of(host.netns, "10.65.0.1"), sorted([("routed", host_ifname("w")), ("static", "fab0")])
    )


def fabric_namespace(namespaces: Namespaces) -> str:
    """A namespace with a fabric link 10.0.0.1/24, so gateway routes via 10.0.0.x resolve."""
    netns = namespaces.add()
    sh(["ip", "-n", netns, "link", "add", "fab0", "type", "veth", "peer", "name", "fab1"])
    sh(["ip", "-n", netns, "addr", "add", "10.0.0.1/24", "dev", "fab0"])
    sh(["ip", "-n", netns, "link", "set", "fab0", "up"])
    sh(["ip", "-n", netns, "link", "set", "fab1", "up"])
    return netns


def run_script(netns: str, script: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """Run a Python script inside the namespace, as the daemon would run there; it must succeed."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr
    return out


def test_ten_thousand_routes_reconcile(namespaces: Namespaces) -> None:
    """10,000 routes in and out through the real netlink edge; the figure is printed, not asserted."""
    netns = fabric_namespace(namespaces)
    script = textwrap.dedent("""
        import asyncio, ipaddress, time
        from routed.fib.kernel import NetlinkKernel
        from routed.fib.reconciler import Reconciler
        from routed.fib.routes import gateway_route
        async def main():
            kernel = NetlinkKernel(254)
            rec = Reconciler(kernel, sources=("bgp",), resync_interval=3600)
            rec.mark_ready("bgp")
            gw = (ipaddress.ip_address("10.0.0.2"),)
            prefixes = [f"10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}/32" for i in range(10000)]
            wanted = [gateway_route(ipaddress.ip_network(p), gw) for p in prefixes]
            task = asyncio.create_task(rec.run())
            start = time.monotonic()
            rec.set_routes("bgp", wanted)
            await asyncio.sleep(0)
            await rec.wait_in_sync()
            added = time.monotonic() - start
            start = time.monotonic()
            rec.set_routes("bgp", [])
            await asyncio.sleep(0)
            await rec.wait_in_sync()
            print(f"add={added:.2f}s delete={time.monotonic() - start:.2f}s")
            task.cancel()
        asyncio.run(main())
    """)
    out = run_script(netns, script, timeout=300)
    print(out.stdout)
    assert routes(netns, "proto", "201") == []


def others_namespaces() -> list[str]:
    """Namespaces not made by a test (all of which are rt-*, and may come and go meanwhile
    under pytest -n): a routed that made one would show here."""
    names = [line.split()[0] for line in sh("ip netns list").stdout.splitlines() if line.strip()]
    return sorted(n for n in names if not n.startswith("rt-"))


def test_invalid_config_changes_nothing(host: Host, namespaces: Namespaces) -> None:
    c1 = namespaces.add()
    bad = host.dir / "bad.yaml"
    bad.write_text(host.config.read_text().replace("pools: [10.65.0.0/24", "pools: [10.65.0.0/33"))
    netns_before = others_namespaces()
    snapshot = (links(host.netns), routes(host.netns), routes(host.netns, family="-6"), links(c1))
    forwarding = sh(["cat", "/proc/sys/net/ipv4/ip_forward"], netns=host.netns).stdout
    for args in (
        ["run", "-c", str(bad)],
        ["workload", "add", "w", "--netns", c1, "-c", str(bad)],
        ["workload", "del", "w", "-c", str(bad)],
        ["config", "check", str(bad)],
    ):
        result = host.routed(*args, check=False, timeout=20)
        assert result.returncode == 2, (args, result.stderr)
        assert f"{bad}:5:" in result.stderr and "pools[0]" in result.stderr, result.stderr
    assert (links(host.netns), routes(host.netns), routes(host.netns, family="-6"), links(c1)) == snapshot
    assert sh(["cat", "/proc/sys/net/ipv4/ip_forward"], netns=host.netns).stdout == forwarding
    assert others_namespaces() == netns_before
    assert not (host.dir / "state").exists()
    assert not (host.dir / "api.sock").exists()


def test_ecmp_and_replace_through_the_kernel(namespaces: Namespaces) -> None:
    """Multipath routes, and a best-path change as one replace (the route never disappears)."""
    netns = fabric_namespace(namespaces)
    script = textwrap.dedent("""
        import asyncio, ipaddress, json
        from routed.fib.kernel import NetlinkKernel
        from routed.fib.reconciler import Reconciler
        from routed.fib.routes import gateway_route
        P = ipaddress.ip_network("10.65.2.1/32")
        gw = lambda *a: tuple(ipaddress.ip_address(x) for x in a)
        async def main():
            kernel = NetlinkKernel(254)
            rec = Reconciler(kernel, sources=("bgp",), resync_interval=3600)
            rec.mark_ready("bgp")
            task = asyncio.create_task(rec.run())
            seen = []
            for hops in (gw("10.0.0.12", "10.0.0.13"), gw("10.0.0.14"), gw("10.0.0.13", "10.0.0.12")):
                rec.set_routes("bgp", [gateway_route(P, hops)])
                await asyncio.sleep(0)
                await rec.wait_in_sync()
                view = await kernel.dump()
                seen.append([str(h) for h in view.ours[(254, P)].nexthops])
            print(json.dumps({"seen": seen, "stats": [rec.stats.added, rec.stats.replaced]}))
            task.cancel()
        asyncio.run(main())
    """)
    monitor = subprocess.Popen(["ip", "-n", netns, "monitor", "route"], stdout=subprocess.PIPE, text=True)
    try:
        out = run_script(netns, script, timeout=60)
    finally:
        monitor.terminate()
        events, _ = monitor.communicate(timeout=5)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["seen"] == [
        ["via 10.0.0.12", "via 10.0.0.13"],
        ["via 10.0.0.14"],
        ["via 10.0.0.12", "via 10.0.0.13"],
    ]
    assert result["stats"] == [1, 2]  # one add, then two replaces
    kernel_view = routes(netns, "10.65.2.1")
    assert sorted(h["gateway"] for h in kernel_view[0]["nexthops"]) == ["10.0.0.12", "10.0.0.13"]
    # never deleted in between: the monitor saw no "Deleted" for the prefix
    assert "Deleted 10.65.2.1" not in events, events


def test_unreachable_block_through_the_kernel(namespaces: Namespaces) -> None:
    """An IPAM block's `unreachable` route: installed, read back as ours, a /32 inside it wins by
    longest match, an unused address is refused at once, and it is deleted by its own type."""
    netns = fabric_namespace(namespaces)
    sh(["ip", "-n", netns, "link", "add", "rtblock0", "type", "veth", "peer", "name", "rpblock0"])
    sh(["ip", "-n", netns, "link", "set", "rtblock0", "up"])
    sh(["ip", "-n", netns, "link", "set", "rpblock0", "up"])
    script = textwrap.dedent("""
        import asyncio, ipaddress, json
        from routed.fib.kernel import NetlinkKernel
        from routed.fib.reconciler import Reconciler
        from routed.fib.routes import local_route, unreachable_route
        B = ipaddress.ip_network("10.65.1.0/26")
        W = ipaddress.ip_network("10.65.1.1/32")
        async def main():
            kernel = NetlinkKernel(254)
            rec = Reconciler(kernel, sources=("local",), resync_interval=3600)
            rec.mark_ready("local")
            task = asyncio.create_task(rec.run())
            rec.set_routes("local", [unreachable_route(B), local_route(W, "rtblock0")])
            await asyncio.sleep(0)
            await rec.wait_in_sync()
            view = await kernel.dump()
            seen = sorted(str(r) for r in view.ours.values())
            print(json.dumps({"seen": seen}), flush=True)
            input()  # the test looks at the kernel meanwhile
            rec.set_routes("local", [local_route(W, "rtblock0")])
            await asyncio.sleep(0)
            await rec.wait_in_sync()
            print(json.dumps({"left": sorted(str(r) for r in (await kernel.dump()).ours.values())}))
            task.cancel()
        asyncio.run(main())
    """)
    process = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        first = json.loads(process.stdout.readline())
        assert first["seen"] == ["10.65.1.1/32 dev rtblock0", "unreachable 10.65.1.0/26"]
        listed = sh(["ip", "-n", netns, "route", "show", "proto", "routed"]).stdout
        assert "unreachable 10.65.1.0/26" in listed
        assert sh(["ip", "-n", netns, "route", "get", "10.65.1.1"]).stdout.startswith(
            "10.65.1.1 dev rtblock0"
        )
        refused = subprocess.run(
            ["ip", "-n", netns, "route", "get", "10.65.1.7"], capture_output=True, text=True, check=False
        )
        assert refused.returncode != 0 and "no route to host" in refused.stderr.lower(), refused
        process.stdin.write("\n")
        process.stdin.flush()
        second = json.loads(process.stdout.readline())
        assert second["left"] == ["10.65.1.1/32 dev rtblock0"]
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_own_changes_are_not_echoed_back(namespaces: Namespaces) -> None:
    """The kernel drops the notifications of our own requests; anyone else's still arrive."""
    netns = fabric_namespace(namespaces)
    script = textwrap.dedent("""
        import asyncio, ipaddress, json, subprocess
        from routed.fib.kernel import EventsLost, NetlinkKernel
        from routed.fib.plan import RoutePlan
        from routed.fib.routes import gateway_route
        async def main():
            kernel = NetlinkKernel(254)
            events = kernel.events()
            assert isinstance(await anext(events), EventsLost)
            gw = (ipaddress.ip_address("10.0.0.2"),)
            ours = [gateway_route(ipaddress.ip_network(f"10.65.0.{i}/32"), gw) for i in range(100)]
            assert await kernel.apply(RoutePlan(add=tuple(ours))) == []
            assert await kernel.apply(RoutePlan(delete=tuple(ours[:50]))) == []
            subprocess.run(["ip", "route", "add", "10.66.0.1/32", "via", "10.0.0.2", "proto", "201"], check=True)
            subprocess.run(["ip", "route", "del", "10.65.0.99/32", "proto", "201"], check=True)
            seen = []
            while len(seen) < 2:
                ev = await asyncio.wait_for(anext(events), 10)
                seen.append([ev.added, str(ev.key[1])])
            print(json.dumps(seen))
        asyncio.run(main())
    """)
    out = run_script(netns, script, timeout=60)
    # the first two events are the other process's changes, not any of our 150
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        [True, "10.66.0.1/32"],
        [False, "10.65.0.99/32"],
    ]


def test_a_failure_inside_a_batch_is_reported_alone(namespaces: Namespaces) -> None:
    """Only the last request of a batch asks for an ack: a failure in the middle must still be
    seen, attributed to its route, and the routes around it installed."""
    netns = fabric_namespace(namespaces)
    sh(["ip", "-n", netns, "route", "add", "10.65.0.5/32", "via", "10.0.0.2", "proto", "static"])
    script = textwrap.dedent("""
        import asyncio, ipaddress, json
        from routed.fib.kernel import NetlinkKernel
        from routed.fib.plan import RoutePlan
        from routed.fib.routes import gateway_route
        async def main():
            kernel = NetlinkKernel(254)
            gw = (ipaddress.ip_address("10.0.0.2"),)
            routes = [gateway_route(ipaddress.ip_network(f"10.65.0.{i}/32"), gw) for i in range(10)]
            failures = await kernel.apply(RoutePlan(add=tuple(routes)))
            print(json.dumps([[str(f.route.dst), f.reason.split(":")[0]] for f in failures]))
        asyncio.run(main())
    """)
    out = run_script(netns, script, timeout=60)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [["10.65.0.5/32", "EEXIST"]]
    ours = {r["dst"] for r in routes(netns, "proto", "201")}
    assert ours == {f"10.65.0.{i}" for i in range(10) if i != 5}


def test_routes_come_back_after_a_link_flap(namespaces: Namespaces) -> None:
    """The kernel flushes routes through a link that goes down, silently; routed puts them back
    once the link is up again, long before its next periodic resync (an hour here)."""
    netns = fabric_namespace(namespaces)
    script = textwrap.dedent("""
        import asyncio, ipaddress, json, subprocess, time
        from routed.fib.kernel import NetlinkKernel
        from routed.fib.reconciler import Reconciler
        from routed.fib.routes import gateway_route
        def ours():
            out = subprocess.run(["ip", "-j", "route", "show", "proto", "201"], capture_output=True, text=True)
            return sorted(r["dst"] for r in json.loads(out.stdout or "[]"))
        async def main():
            rec = Reconciler(NetlinkKernel(254), sources=("bgp",), resync_interval=3600)
            rec.mark_ready("bgp")
            gw = (ipaddress.ip_address("10.0.0.2"),)
            rec.set_routes("bgp", [gateway_route(ipaddress.ip_network(f"10.65.9.{i}/32"), gw) for i in (1, 2)])
            task = asyncio.create_task(rec.run())
            await asyncio.sleep(0)
            await rec.wait_in_sync()
            assert ours() == ["10.65.9.1", "10.65.9.2"], ours()
            subprocess.run(["ip", "link", "set", "fab0", "down"], check=True)
            await asyncio.sleep(0.5)
            assert ours() == [], ours()  # flushed by the kernel, without a netlink event
            subprocess.run(["ip", "link", "set", "fab0", "up"], check=True)
            deadline = time.monotonic() + 15
            while ours() != ["10.65.9.1", "10.65.9.2"] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert ours() == ["10.65.9.1", "10.65.9.2"], ours()
            print(f"full resyncs {rec.stats.full_resyncs}")
            task.cancel()
        asyncio.run(main())
    """)
    out = run_script(netns, script, timeout=60)
    assert "full resyncs" in out.stdout


def test_next_hops_of_the_other_family_and_link_local_through_the_kernel(namespaces: Namespaces) -> None:
    """An IPv4 route via a global IPv6 next hop (RFC 8950: RTA_VIA), an IPv6 and an IPv4 route
    via a link-local next hop (pinned to the fabric interface, from the FIB sink): installed,
    read back equal (a second pass changes nothing), and what `ip route` shows."""
    netns = fabric_namespace(namespaces)
    sh(["ip", "-n", netns, "-6", "addr", "add", "fd00:0:0:1::1/64", "dev", "fab0", "nodad"])
    script = textwrap.dedent("""
        import asyncio, ipaddress, json
        from bgp.decision import Reason, Selection
        from bgp.model import Attributes, Peer, fresh_path
        from routed.fib.kernel import NetlinkKernel
        from routed.fib.reconciler import Reconciler
        from routed.fib.sink import FibSink
        ip, net = ipaddress.ip_address, ipaddress.ip_network
        def selection(prefix, hop):
            peer = Peer(ip("fd00:0:0:1::12"), 64512, 64512)
            path = fresh_path(net(prefix), peer, Attributes(next_hop=ip(hop)))
            return Selection(path, (path,), Reason.ONLY_PATH)
        async def main():
            kernel = NetlinkKernel(254)
            rec = Reconciler(kernel, sources=("bgp",), resync_interval=3600)
            rec.mark_ready("bgp")
            task = asyncio.create_task(rec.run())
            sink = FibSink(rec, 254, "fab0")
            sink.best_paths({
                net("10.65.2.0/26"): selection("10.65.2.0/26", "fd00:0:0:1::12"),
                net("fd00:65:0:3::/122"): selection("fd00:65:0:3::/122", "fe80::13"),
                net("10.65.3.0/26"): selection("10.65.3.0/26", "fe80::13"),
            })
            await asyncio.sleep(0)
            await rec.wait_in_sync()
            first = [rec.stats.added, rec.stats.replaced]
            view = await kernel.dump()
            ours = {str(k[1]): [str(h) for h in r.nexthops] for k, r in view.ours.items()}
            plan = rec.desired() == {k: view.ours[k] for k in rec.desired()}
            print(json.dumps({"ours": ours, "equal": plan, "stats": first}))
            task.cancel()
        asyncio.run(main())
    """)
    result = json.loads(run_script(netns, script, timeout=60).stdout.strip().splitlines()[-1])
    assert result["ours"] == {
        "10.65.2.0/26": ["via fd00:0:0:1::12"],
        "fd00:65:0:3::/122": ["via fe80::13 dev fab0"],
        "10.65.3.0/26": ["via fe80::13 dev fab0"],
    }
    assert result["equal"] and result["stats"] == [3, 0]
    shown = sh(["ip", "-n", netns, "route", "show", "proto", "201"]).stdout
    assert "10.65.2.0/26 via inet6 fd00:0:0:1::12 dev fab0" in shown, shown
    assert "10.65.3.0/26 via inet6 fe80::13 dev fab0" in shown, shown
    shown6 = sh(["ip", "-n", netns, "-6", "route", "show", "proto", "201"]).stdout
    assert "fd00:65:0:3::/122 via fe80::13 dev fab0" in shown6, shown6
