"""A reflector that takes its clients from the node registry in etcd (`peers: - {registry:
etcd, kind: client, password: ...}`): every host with etcd configured registers itself, the
reflector peers with each (TCP-MD5 still applies), follows a host decommissioned and one that
comes back without touching the other sessions, and forgets a host whose record is gone only
once its routes' graceful-restart time is over."""

from __future__ import annotations

import signal

import pytest

from tests.lab import Lab, lab_variant, running_lab
from tests.netns import wait_until
from tests.support.etcd import ETCD_IPAM, ETCD_ON_RR1
from tests.support.fabric import daemon_pid, kernel_routes, sessions_up, status
from tests.traffic import kill_and_wait

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

HOSTS = {"h1": "10.0.0.11", "h2": "10.0.0.12", "h3": "10.0.0.13"}
REFLECTOR = "{address: 10.0.0.1, kind: reflector}"
CLIENTS = (
    "  - {address: 10.0.0.11, kind: client}\n"
    "  - {address: 10.0.0.12, kind: client}\n"
    "  - {address: 10.0.0.13, kind: client}\n"
)
RESTART_TIME = 6


def edits() -> dict[str, list[tuple[str, str]]]:
    # the workloads are added by the test once etcd answers (their blocks are claimed there):
    # at the lab's start a host may ask before rr1's etcd is up
    workloads = [
        (f"routed workload add {h}-web{w} --netns web{w}", "echo later") for h in HOSTS for w in (1, 2)
    ]
    found: dict[str, list[tuple[str, str]]] = {
        "quickstart.clab.yml": [
            (
                "        - ip addr add 10.0.0.1/24 dev eth1\n",
                f"        - ip addr add 10.0.0.1/24 dev eth1\n        - {ETCD_ON_RR1}\n",
            ),
            *workloads,
        ],
        "quickstart/rr1.yaml": [
            (CLIENTS, f"  - {{registry: etcd, kind: client, password: s3cret}}\n{ETCD_IPAM}\n")
        ],
    }
    for host, block in (("h1", "10.65.1.0/26"), ("h2", "10.65.2.0/26"), ("h3", "10.65.3.0/26")):
        found[f"quickstart/{host}.yaml"] = [
            (REFLECTOR, "{address: 10.0.0.1, kind: reflector, password: s3cret}"),
            (f"ipam: {{mode: static, blocks: [{block}]}}", ETCD_IPAM),
        ]
    return found


def clients(lab: Lab) -> dict[str, dict[str, object]]:
    return {p["address"]: p for p in status(lab, "rr1")["bgp"]["peers"] if p["registered"]}


def learned_from(lab: Lab, node: str) -> set[str]:
    """The hosts `node` has routes through (learned from the reflector)."""
    return {via for via in kernel_routes(lab, node).values() if via in HOSTS.values()}


@pytest.mark.long(70)
def test_clients_from_the_registry_join_leave_and_come_back() -> None:
    appended = {f"{h}.yaml": f"bgp: {{graceful_restart: {{restart_time: {RESTART_TIME}}}}}" for h in HOSTS}
    with lab_variant("quickstart", appended, edits()) as topology, running_lab(topology) as lab:
        wait_until(lambda: sessions_up(lab, "rr1"), sorted(HOSTS.values()), timeout=60, what="all hosts join")
        assert set(clients(lab)) == set(HOSTS.values())
        for host in HOSTS:
            add = ("routed", "workload", "add", f"{host}-web1", "--netns", "web1")
            wait_until(lambda a=add, h=host: lab.exec(h, *a, check=False).returncode, 0, timeout=30)
        wait_until(lambda: learned_from(lab, "h1"), {"10.0.0.12", "10.0.0.13"}, timeout=30, what="h1 learns")
        since = clients(lab)["10.0.0.11"]["since"]

        # h3 decommissioned: its record goes at once, rr1 forgets it and h1 its routes
        lab.exec("h3", "routed", "stop", "--withdraw")
        wait_until(lambda: "10.0.0.13" in clients(lab), False, timeout=20, what="rr1 forgets h3")
        wait_until(lambda: learned_from(lab, "h1"), {"10.0.0.12"}, timeout=10)
        # and comes back by starting again
        lab.start("h3")
        wait_until(lambda: sessions_up(lab, "rr1"), sorted(HOSTS.values()), timeout=40, what="h3 rejoins")
        wait_until(lambda: learned_from(lab, "h1"), {"10.0.0.12", "10.0.0.13"}, timeout=30)

        # h2 crashes and its record is gone (as when its lease runs out): its routes are kept
        # for its restart time, then it is forgotten
        kill_and_wait(daemon_pid(lab, "h2"), signal.SIGKILL)
        lab.exec("rr1", "etcdctl", "--endpoints", "10.0.0.1:2379", "del", "/routed/nodes/v1/h2")
        wait_until(lambda: clients(lab)["10.0.0.12"]["state"] != "up", timeout=15)
        assert "10.0.0.12" in learned_from(lab, "h1")  # kept meanwhile
        wait_until(lambda: "10.0.0.12" in clients(lab), False, timeout=RESTART_TIME + 15, what="h2 forgotten")
        wait_until(lambda: learned_from(lab, "h1"), {"10.0.0.13"}, timeout=10)

        # none of this touched h1's session
        assert clients(lab)["10.0.0.11"]["since"] == since and clients(lab)["10.0.0.11"]["flaps"] == 0
        assert "event=registry_clients_changed" in lab.log("rr1")
