"""Prometheus metrics and health probes, served on `metrics.listen` from the daemon's own loop.

Every value is read from the daemon's status (the dict `routed status --json` prints), so
/metrics and `routed status` can never disagree; only the reconcile duration is a histogram fed
as passes happen. `families` and `readiness` are pure.

The listener shares the daemon's only event loop: a scrape is served from a status at most
STATUS_MAX_AGE old (built once for every scrape and probe in that time), and at most
MAX_CONCURRENT requests are served at once; more get 503 at once, so a flood of scrapers
cannot starve routing.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from bgp.records import PeerJson, SpeakerStatus
from routed.httpserve import HttpServer, Reply
from routed.log import event
from routed.nodestatus import FibStatus, NodeStatus

log = logging.getLogger("routed.metrics")

Status = NodeStatus
PEER_LABELS = ["peer", "description", "kind"]
STATUS_MAX_AGE = 1.0  # seconds a status built for a scrape serves the next ones
MAX_CONCURRENT = 4  # requests served at once; the rest are told to come back


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _peer_families(peers: list[PeerJson]) -> Iterator[Metric]:
    up = _gauge("routed_bgp_session_up", "1 if the BGP session is established", PEER_LABELS)
    flaps = _counter("routed_bgp_session_flaps", "times the session went down after being up", ["peer"])
    since = _gauge("routed_bgp_session_state_since_seconds", "unix time of the last state change", ["peer"])
    prefixes = _gauge(
        "routed_bgp_prefixes",
        "prefixes per peer now: received (all it sent), accepted, rejected (by policy), announced (by us)",
        ["peer", "direction"],
    )
    rejections = _counter(
        "routed_bgp_prefixes_rejected", "prefixes refused by import policy since start", ["peer", "reason"]
    )
    stale = _gauge("routed_bgp_stale_routes", "this peer's routes kept through its restart", ["peer"])
    updates = _counter("routed_bgp_updates_received", "UPDATE messages received", ["peer"])
    bfd = _gauge(
        "routed_bfd_session_up", "1 if the peer's BFD session is up (peers with bfd: only)", ["peer"]
    )
    bfd_refused = _counter(
        "routed_bfd_packets_refused", "BFD packets from the peer discarded, by reason", ["peer", "reason"]
    )
    for peer in peers:
        address = peer["address"]
        labels = [address, peer.get("description") or "", peer["kind"]]
        up.add_metric(labels, 1 if peer["state"] == "up" else 0)
        flaps.add_metric([address], peer["flaps"])
        since.add_metric([address], peer["since"])
        for direction in ("received", "accepted", "rejected", "announced"):
            prefixes.add_metric([address, direction], peer[direction])
        for reason, count in sorted(peer.get("rejections", {}).items()):
            rejections.add_metric([address, reason], count)
        stale.add_metric([address], peer.get("graceful_restart", {}).get("stale", 0))
        updates.add_metric([address], peer["updates"])
        if peer.get("bfd") is not None:
            bfd.add_metric([address], 1 if peer["bfd"] == "up" else 0)
        for reason, count in sorted((peer.get("bfd_refused") or {}).items()):
            bfd_refused.add_metric([address, reason], count)
    yield from (up, flaps, since, prefixes, rejections, stale, updates, bfd, bfd_refused)


def _bgp_families(bgp: SpeakerStatus) -> Iterator[Metric]:
    yield from _peer_families(bgp["peers"])
    headless = 1 if bgp.get("headless_since") else 0
    simple: list[tuple[Callable[[str, str], Any], str, str, float]] = [
        (
            _gauge,
            "routed_bgp_ready",
            "1 once every peer's End-of-RIB came (or its timer ran out)",
            bgp["ready"],
        ),
        (_gauge, "routed_bgp_headless", "1 while no route reflector is up", headless),
        (_gauge, "routed_bgp_loc_rib_prefixes", "prefixes with a best path", bgp["loc_rib"]),
        (_gauge, "routed_bgp_local_prefixes", "prefixes this node originates", bgp["announced"]),
        (_gauge, "routed_bgp_draining", "1 while draining (RFC 8326)", bgp.get("draining", False)),
        (_gauge, "routed_address_conflicts", "address conflicts now", bgp["conflicts"].get("current", 0)),
        (_counter, "routed_exabgp_restarts", "times ExaBGP was restarted", bgp["exabgp"]["restarts"]),
        (
            _counter,
            "routed_exabgp_messages_dropped",
            "ExaBGP lines that could not be used",
            bgp["counters"].get("messages_dropped", 0),
        ),
    ]
    by_family = _gauge(
        "routed_bgp_family_prefixes",
        "prefixes by address family: best paths (loc_rib), those kept stale, ours announced",
        ["family", "table"],
    )
    for family, counts in sorted(bgp.get("families", {}).items()):
        for table in ("loc_rib", "stale", "announced"):
            by_family.add_metric([family.split()[0], table], counts[table])
    yield by_family
    for make, name, doc, value in simple:
        family = make(name, doc)
        family.add_metric([], float(value))
        yield family


def _fib_families(fib: FibStatus) -> Iterator[Metric]:
    routes = _gauge("routed_fib_routes", "our routes in the kernel, by origin", ["origin"])
    for origin, count in fib["routes"].items():
        routes.add_metric([origin], count)
    operations = _counter("routed_fib_operations", "kernel route operations that succeeded", ["operation"])
    for operation, count in (("add", fib["added"]), ("replace", fib["replaced"]), ("delete", fib["deleted"])):
        operations.add_metric([operation], count)
    synced = _gauge("routed_fib_synced", "1 when the kernel holds exactly the routes wanted")
    synced.add_metric([], 1 if fib["synced"] else 0)
    failing = _gauge("routed_fib_failing_routes", "routes the kernel refuses now, by its reason", ["reason"])
    for reason, count in (fib.get("failing") or {}).items():
        failing.add_metric([reason], count)
    for name, value, doc in (
        ("routed_fib_failures", fib["failures"], "kernel route operations that failed (each retried)"),
        ("routed_fib_restored", fib["restored"], "our routes removed by someone else and put back"),
        ("routed_fib_full_resyncs", fib["full_resyncs"], "full reads of the kernel table"),
    ):
        counter = _counter(name, doc)
        counter.add_metric([], value)
        yield counter
    yield from (routes, operations, synced, failing)


def _ipam_families(ipam: dict[str, Any]) -> Iterator[Metric]:
    used = _gauge("routed_ipam_block_used_addresses", "addresses in use in each of our blocks", ["block"])
    size = _gauge("routed_ipam_block_size_addresses", "usable addresses of each of our blocks", ["block"])
    for block in ipam["blocks"]:
        used.add_metric([block["block"]], block["used"])
        size.add_metric([block["block"]], block["size"])
    outside = _gauge("routed_ipam_outside_block_addresses", "workload addresses outside our blocks (own /32)")
    outside.add_metric([], len(ipam["outside_blocks"]))
    yield from (used, size, outside)


def families(status: Status) -> Iterator[Metric]:
    """Every routed_* metric family, from a daemon status."""
    build = InfoMetricFamily("routed_build", "routed's version and the Python it runs on")
    build.add_metric([], {"version": status["version"], "python": platform.python_version()})
    yield build
    node = InfoMetricFamily("routed_node", "this node's identity")
    identity = {k: str(status[k]) for k in ("node", "role", "router_id", "asn")}
    node.add_metric([], identity)
    yield node
    started = _gauge("routed_start_time_seconds", "unix time the daemon started")
    started.add_metric([], status["started"])
    workloads = _gauge("routed_workloads", "workloads attached to this node")
    workloads.add_metric([], status["workloads"])
    yield from (started, workloads)
    yield from _bgp_families(status["bgp"])
    yield from _fib_families(status["fib"])
    if "firewall" in status:
        yield from _firewall_families(status["firewall"])
    if "ipam" in status:
        yield from _ipam_families(status["ipam"])
    if "mtu" in status:
        yield from _mtu_families(status["mtu"])


def _mtu_families(mtu: Mapping[str, Any]) -> Iterator[Metric]:
    workloads = _gauge("routed_workload_mtu", "the MTU new workload veths get (mtu: or the fabric's)")
    if mtu.get("workloads") is not None:
        workloads.add_metric([], mtu["workloads"])
    fabric = _gauge("routed_fabric_mtu", "the fabric interface's MTU", ["interface"])
    if mtu.get("fabric") is not None:
        fabric.add_metric([str(mtu["source"]).removeprefix("fabric ")], mtu["fabric"])
    yield from (workloads, fabric)


def _firewall_families(firewall: dict[str, Any]) -> Iterator[Metric]:
    dropped = _counter(
        "routed_firewall_dropped_packets", "packets from workloads dropped by routed's table", ["reason"]
    )
    for reason, count in sorted((firewall.get("dropped") or {}).items()):
        dropped.add_metric([reason], count)
    enforced = _gauge("routed_firewall_enforced", "1 while routed's nftables table is in place")
    enforced.add_metric([], 0 if firewall.get("error") else 1)
    restored = _counter("routed_firewall_restored", "times routed's table was found missing or changed")
    restored.add_metric([], firewall.get("restored", 0))
    yield from (dropped, enforced, restored)
    on = _gauge("routed_nat_outgoing", "1 for a pool whose traffic beyond the fabric is NATed", ["pool"])
    connections = _counter("routed_nat_connections", "connections source-NATed, by pool", ["pool"])
    packets = _counter("routed_nat_packets", "packets of NATed connections, both ways, by pool", ["pool"])
    size = _counter("routed_nat_bytes", "bytes of NATed connections, both ways, by pool", ["pool"])
    for pool in firewall.get("nat") or []:
        on.add_metric([pool["pool"]], 1 if pool["nat_outgoing"] else 0)
        if pool["nat_outgoing"]:
            connections.add_metric([pool["pool"]], pool["connections"])
            packets.add_metric([pool["pool"]], pool["packets"])
            size.add_metric([pool["pool"]], pool["bytes"])
    yield from (on, connections, packets, size)


def readiness(status: Status) -> dict[str, bool]:
    """Each condition of /readyz: the config is loaded (we run on it), the FIB is synced, and
    a BGP session is up, unless there are no peers to have one with."""
    peers = status["bgp"]["peers"]
    return {
        "config_loaded": True,
        "fib_synced": bool(status["fib"]["synced"]),
        "bgp_session_up": not peers or any(p["state"] == "up" for p in peers),
    }


class StatusCollector(Collector):
    def __init__(self, status: Callable[[], Status]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        yield from families(self._status())


def split_listen(listen: str) -> tuple[str, int]:
    """ "127.0.0.1:9180" or "[::1]:9180" -> (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class CachedStatus:
    """The daemon's status, built at most once every `max_age` seconds."""

    def __init__(self, build: Callable[[], Status], max_age: float = STATUS_MAX_AGE) -> None:
        self._build = build
        self.max_age = max_age
        self._built_at = float("-inf")
        self._status: Status | None = None
        self.builds = 0

    def __call__(self) -> Status:
        now = time.monotonic()
        if now - self._built_at >= self.max_age:
            self._status = self._build()
            self._built_at = now
            self.builds += 1
        assert self._status is not None
        return self._status


class _ServerCollector(Collector):
    """The listener's own counts: how often a status was built, how many requests were refused."""

    def __init__(self, server: MetricsServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        builds = _counter("routed_metrics_status_builds", "daemon statuses built for scrapes and probes")
        builds.add_metric([], self._server.status_builds)
        refused = _counter("routed_metrics_requests_refused", "requests answered 503: too many at once")
        refused.add_metric([], self._server.refused)
        yield from (builds, refused)


class MetricsServer:
    """/metrics, /healthz and /readyz over HTTP, in the daemon's event loop (routed.httpserve)."""

    def __init__(self, listen: str, status: Callable[[], Status]) -> None:
        self.listen = listen
        self.listening = ""  # what we bound, or why not
        self._status = CachedStatus(status)
        self.registry = CollectorRegistry()
        self.registry.register(StatusCollector(self._status))
        self.registry.register(_ServerCollector(self))
        self.reconcile_seconds = Histogram(
            "routed_fib_reconcile_seconds",
            "time to write one batch of route changes to the kernel",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        # looked up on every request, so that a handler replaced on the class takes effect
        self.http = HttpServer(
            {
                "/metrics": lambda: self._metrics(),
                "/healthz": lambda: self._healthz(),
                "/readyz": lambda: self._readyz(),
            },
            MAX_CONCURRENT,
        )

    async def start(self) -> None:
        host, port = split_listen(self.listen)
        try:
            await self.http.start(host, port)
        except OSError as exc:
            # routing matters more than its metrics: the daemon runs on, saying so everywhere
            self.listening = f"error: cannot listen on {self.listen}: {exc.strerror or exc}"
            log.error(
                event(
                    "metrics_listen_failed",
                    listen=self.listen,
                    reason=exc,
                    fix="free the port or set metrics.listen to another HOST:PORT",
                )
            )
            return
        self.listening = self.listen
        log.info(event("metrics_listening", listen=self.listen, paths="/metrics,/healthz,/readyz"))

    @property
    def status_builds(self) -> int:
        return self._status.builds

    @property
    def refused(self) -> int:
        """Requests answered 503 because MAX_CONCURRENT were being served."""
        return self.http.refused

    async def close(self) -> None:
        await self.http.close()

    async def _metrics(self) -> Reply:
        return Reply(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    async def _healthz(self) -> Reply:
        return Reply.text("ok\n")

    async def _readyz(self) -> Reply:
        checks = readiness(self._status())
        ready = all(checks.values())
        return Reply.json({"ready": ready, "checks": checks}, status=200 if ready else 503)
