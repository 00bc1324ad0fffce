"""/metrics under a 100k-route load (issue 25, finding 9): fifty scrapers at once, again and
again while BIRD2 sends 100,000 /32s, each answered (200, or 503 past the concurrency bound),
and the load itself still installs every route; a scrape reads counts, it copies no table."""

from __future__ import annotations

import re
import threading

import pytest

from bench.bulk import _injected
from bench.common import birdc, node_exec, two_node_lab, wait_ready
from bench.netlink_count import RouteCounter
from routed.lab import runner

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

COUNT = 100_000
SCRAPE = [
    "curl",
    "-s",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    "--max-time",
    "60",
    "http://127.0.0.1:9180/metrics",
]


@pytest.mark.long(90)
def test_fifty_concurrent_scrapes_during_a_100k_route_load() -> None:
    with two_node_lab("routed", COUNT) as topo:
        wait_ready(topo, "routed")
        counter = RouteCounter(topo.node("rx").netns, _injected)
        codes: list[str] = []
        lock = threading.Lock()

        def scrape() -> None:
            code = runner.run_in_node(topo, "rx", SCRAPE, capture=True).stdout.strip()
            with lock:
                codes.append(code)

        try:
            birdc(topo, "inj", "enable", "injected")
            rounds = 3  # back to back from the first UPDATE on: the load takes seconds here
            for _ in range(rounds):
                scrapers = [threading.Thread(target=scrape) for _ in range(50)]
                for thread in scrapers:
                    thread.start()
                for thread in scrapers:
                    thread.join(timeout=90)
            assert counter.wait_for(COUNT, 120) is not None, "the load did not finish"
        finally:
            counter.close()
        assert len(codes) == 50 * rounds and set(codes) <= {"200", "503"}, sorted(set(codes))
        assert codes.count("200") >= rounds, codes.count("200")
        text = node_exec(topo, "rx", "curl", "-s", "http://127.0.0.1:9180/metrics")
        received = re.search(r'routed_bgp_prefixes\{direction="received",peer="10.0.0.1"\} (\S+)', text)
        assert received and float(received.group(1)) == COUNT, text[:2000]
        # 150 scrapes and more, a status built at most once a second for them all: not per scrape
        builds = re.search(r"^routed_metrics_status_builds_total (\S+)$", text, re.MULTILINE)
        assert builds and float(builds.group(1)) <= 30, builds
