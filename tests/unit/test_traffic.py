"""The ping stream's account of its losses (tests/traffic.py), over canned ping output."""

from __future__ import annotations

from bgp.exabgp.commands import runs
from tests.traffic import PingStream

OUTPUT = """PING 10.65.8.1 (10.65.8.1) 56(84) bytes of data.
[1764790000.100000] 64 bytes from 10.65.8.1: icmp_seq=1 ttl=62 time=0.1 ms
[1764790000.150000] 64 bytes from 10.65.8.1: icmp_seq=2 ttl=62 time=0.1 ms
[1764790000.200000] From 10.0.0.41 icmp_seq=3 Destination Net Unreachable
[1764790000.300000] 64 bytes from 10.65.8.1: icmp_seq=5 ttl=62 time=0.1 ms
[1764790000.350000] 64 bytes from 10.65.8.1: icmp_seq=6 ttl=62 time=0.1 ms

--- 10.65.8.1 ping statistics ---
8 packets transmitted, 4 received, 50% packet loss, time 350ms
"""


def test_runs_of_consecutive_numbers() -> None:
    assert list(runs([])) == []
    assert list(runs([1, 2, 3, 7, 9, 10])) == [(1, 3), (7, 7), (9, 10)]


def test_a_stream_names_the_requests_that_went_unanswered_and_when() -> None:
    stream = PingStream(lab=None, node="h1", netns="web", destination="10.65.8.1", seconds=0.4)  # type: ignore[arg-type]
    stream.output, stream.started_wall = OUTPUT, 1764790000.0
    assert stream.count == 8
    assert stream.missing() == [3, 4, 7, 8]
    described = stream.describe_losses()
    assert described.startswith("h1/web->10.65.8.1: icmp_seq 3-4 (2) sent from ")
    assert "(+0.10 s)" in described and "icmp_seq 7-8 (2)" in described and "(+0.30 s)" in described
