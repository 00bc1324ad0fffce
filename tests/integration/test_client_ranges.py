"""A reflector that accepts its clients from a range (`peers: - {range: 10.0.0.0/16, kind:
client, password: ...}`), in a lab written by `routed lab generate`: clients join with the
range's MD5 key and one without it is refused, a client that leaves is forgotten after its
restart time and its routes with it, it rejoins by starting again, and a reload of the
reflector touches no client's session."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.lab import Lab, generate_lab, running_lab
from tests.netns import wait_until
from tests.support.fabric import daemon_pid, kernel_routes, sessions_up, status
from tests.traffic import kill_and_wait, ping_from

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

H1, H2, H3 = "10.0.1.1", "10.0.1.2", "10.0.1.3"
W1 = {"h1": "10.65.0.1", "h2": "10.65.0.65", "h3": "10.65.0.129"}  # each host's first workload
RANGE = "{range: 10.0.0.0/16, kind: client}"
RR = "{address: 10.0.0.1, kind: reflector}"
RESTART_TIME = 6  # the hosts' own, advertised: how long rr1 keeps a client that left


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def generated_lab(root: Path) -> Path:
    topology = generate_lab(root, "ranges", "--hosts", "3")
    configs = root / "ranges"
    edit(configs / "rr1.yaml", RANGE, "{range: 10.0.0.0/16, kind: client, password: s3cret}")
    for host in ("h1", "h2"):
        edit(configs / f"{host}.yaml", RR, "{address: 10.0.0.1, kind: reflector, password: s3cret}")
    for host in ("h1", "h2", "h3"):
        with (configs / f"{host}.yaml").open("a") as config:
            config.write(f"bgp: {{graceful_restart: {{restart_time: {RESTART_TIME}}}}}\n")
    return topology


def clients(lab: Lab) -> dict[str, dict[str, object]]:
    return {p["address"]: p for p in status(lab, "rr1")["bgp"]["peers"] if p["range"]}


def reaches(lab: Lab, src: str, dst: str) -> bool:
    return ping_from(lab, src, "w1", "-c1", "-W1", W1[dst]) == 1


@pytest.mark.long(60)
def test_clients_from_a_range_join_leave_and_rejoin_with_md5(tmp_path: Path) -> None:
    with running_lab(generated_lab(tmp_path)) as lab:
        wait_until(lambda: sessions_up(lab, "rr1"), [H1, H2], timeout=40, what="h1 and h2 join rr1")
        joined = clients(lab)
        assert joined[H1]["range"] == "10.0.0.0/16" and joined[H1]["kind"] == "client"
        wait_until(lambda: reaches(lab, "h1", "h2"), timeout=20, what="h1's w1 reaches h2's")
        # h3 has no key: the kernel drops its SYNs, rr1 never hears of it
        time.sleep(3)
        assert H3 not in clients(lab) and sessions_up(lab, "h3") == []

        # a reload of rr1 that adds a listed peer leaves every client's session as it was
        since = {a: p["since"] for a, p in clients(lab).items()}
        edit(
            lab.file.parent / "ranges" / "rr1.yaml",
            "peers:\n",
            "peers:\n  - {address: 10.0.0.9, kind: nonclient}\n",
        )
        lab.exec("rr1", "routed", "reload")
        wait_until(
            lambda: "10.0.0.9" in {p["address"] for p in status(lab, "rr1")["bgp"]["peers"]}, timeout=10
        )
        time.sleep(2)
        assert {a: p["since"] for a, p in clients(lab).items()} == since
        assert all(p["flaps"] == 0 for p in clients(lab).values())

        # h3 given the key: it joins without rr1 being touched
        edit(
            lab.file.parent / "ranges" / "h3.yaml",
            RR,
            "{address: 10.0.0.1, kind: reflector, password: s3cret}",
        )
        lab.exec("h3", "routed", "reload")
        wait_until(lambda: sessions_up(lab, "rr1"), [H1, H2, H3], timeout=40, what="h3 joins with the key")
        wait_until(lambda: reaches(lab, "h3", "h1"), timeout=20, what="h3's w1 reaches h1's")

        # h2 leaves without a word: kept for its restart time, then forgotten, routes and all
        kill_and_wait(daemon_pid(lab, "h2"), signal.SIGKILL)
        wait_until(lambda: clients(lab).get(H2, {}).get("forget_in_s") is not None, timeout=15)
        assert "10.65.0.64/26" in kernel_routes(lab, "h1")  # kept meanwhile (graceful restart)
        wait_until(lambda: H2 in clients(lab), False, timeout=RESTART_TIME + 15, what="rr1 forgets h2")
        wait_until(lambda: "10.65.0.64/26" in kernel_routes(lab, "h1"), False, timeout=10)
        assert "event=bgp_client_forgotten" in lab.log("rr1")

        # and rejoins by starting again
        lab.start("h2")
        wait_until(lambda: sessions_up(lab, "rr1"), [H1, H2, H3], timeout=40, what="h2 rejoins")
        wait_until(lambda: reaches(lab, "h1", "h2"), timeout=20, what="h1's w1 reaches h2's again")
