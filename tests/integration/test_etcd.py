"""IPAM against a real etcd (Debian's etcd-server), in a namespace of the test's own.

Two nodes racing for the last free block (exactly one wins), and a 3-member cluster losing
one member (allocation and a new claim go on), then its quorum (allocation from owned
blocks goes on, a new claim fails saying etcd is unreachable), then coming back (what was
allocated meanwhile is recorded).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Namespaces
from tests.netns import sh, wait_until
from tests.support.fabric import pids_in

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]


def member_argv(name: str, index: int, data: Path, cluster: int) -> list[str]:
    client, peer = 23790 + index, 23890 + index
    initial = ",".join(f"m{i}=http://127.0.0.1:{23890 + i}" for i in range(cluster))
    return [
        "etcd",
        "--name",
        f"m{index}",
        "--data-dir",
        str(data / f"m{index}"),
        "--listen-client-urls",
        f"http://127.0.0.1:{client}",
        "--advertise-client-urls",
        f"http://127.0.0.1:{client}",
        "--listen-peer-urls",
        f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls",
        f"http://127.0.0.1:{peer}",
        "--initial-cluster",
        initial,
        "--initial-cluster-token",
        name,
    ]


@pytest.fixture
def etcd_netns(namespaces: Namespaces) -> Iterator[str]:
    netns = namespaces.add()
    try:
        yield netns
    finally:
        for pid in pids_in(netns, ""):
            os.kill(pid, signal.SIGKILL)


def start_cluster(netns: str, data: Path, size: int) -> list[dict[str, Any]]:
    members = []
    token = f"rt-{uuid.uuid4().hex[:6]}"  # one per cluster: members of another never join it
    for index in range(size):
        argv = ["ip", "netns", "exec", netns, *member_argv(token, index, data, size)]
        log = data / f"m{index}.log"
        with open(log, "ab") as out:
            pid = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT).pid
        members.append({"argv": argv[4:], "pid": pid, "log": str(log)})
    endpoints = ",".join(f"127.0.0.1:{23790 + i}" for i in range(size))
    wait_until(
        lambda: (
            sh(
                ["etcdctl", "--endpoints", endpoints, "endpoint", "health"], netns=netns, check=False
            ).returncode
        ),
        0,
        timeout=30,
        what=f"etcd cluster of {size} healthy",
    )
    return members


def run_case(netns: str, case: str, args: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "tests.integration.etcd_cases",
            case,
            json.dumps(args),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_two_nodes_race_for_the_last_free_block(etcd_netns: str, tmp_path: Path) -> None:
    start_cluster(etcd_netns, tmp_path, 1)
    for round_ in range(5):  # five races, each on a fresh pool of two blocks
        args = {
            "pool": "10.70.0.0/25",
            "dir": str(tmp_path / f"state{round_}"),
            "endpoints": ["127.0.0.1:23790"],
            "prefix": f"/race{round_}",
        }
        found = run_case(etcd_netns, "race", args)
        assert found["first"] == "10.70.0.1"
        winners = [r for r in found["results"] if not r.startswith("error")]
        losers = [r for r in found["results"] if r.startswith("error")]
        assert winners == ["10.70.0.65"], found
        assert len(losers) == 1 and "every IPv4 block of the pools is claimed" in losers[0], found
        assert sorted(found["owners"]["a"] + found["owners"]["b"]) == ["10.70.0.64/26"]


def test_a_node_up_before_its_network_reaches_etcd_as_soon_as_the_network_is_up(
    etcd_netns: str, tmp_path: Path
) -> None:
    """gRPC's shared connection kept its reconnect backoff (growing to 120 s) across clients:
    a node booted before its network found etcd unreachable long after it was up."""
    start_cluster(etcd_netns, tmp_path, 1)
    args = {
        "pool": "10.70.2.0/24",
        "dir": str(tmp_path / "late"),
        "endpoints": ["127.0.0.1:23790"],
        "prefix": "/late",
    }
    found = run_case(etcd_netns, "network_late", args)
    assert all("etcd is unreachable" in r for r in found["before"]), found
    assert found["after"] == "10.70.2.1", found


def test_a_block_released_just_before_etcd_dies_is_reported_released(etcd_netns: str, tmp_path: Path) -> None:
    members = start_cluster(etcd_netns, tmp_path, 1)
    args = {
        "pool": "10.72.0.0/24",
        "dir": str(tmp_path / "state"),
        "endpoints": ["127.0.0.1:23790"],
        "prefix": "/release",
        "members": members,
    }
    found = run_case(etcd_netns, "release_as_etcd_dies", args)
    assert (found["one"], found["owned"]) == ("10.72.0.1", ["10.72.0.0/26"]), found
    # released in etcd, then etcd gone: the round says the blocks changed, and the cache agrees
    assert (found["changed"], found["owned_after"], found["cached_after"]) == (True, [], []), found
    assert found["next_round_changed"] is False, found


def test_three_member_cluster_losing_a_member_then_quorum(etcd_netns: str, tmp_path: Path) -> None:
    members = start_cluster(etcd_netns, tmp_path, 3)
    args = {
        "pool": "10.71.0.0/24",
        "block_size": 30,  # three addresses a block: a new claim every third workload
        "dir": str(tmp_path / "state"),
        "endpoints": [f"127.0.0.1:{23790 + i}" for i in range(3)],
        "prefix": "/cluster",
        "members": members,
    }
    started = time.monotonic()
    found = run_case(etcd_netns, "cluster", args)
    print(json.dumps(found, indent=1), f"({time.monotonic() - started:.1f} s)")
    assert found["one"] == "10.71.0.1"
    # one member of three gone (the endpoint in use): allocations and a new claim go on
    assert [found["w2"], found["w3"], found["w4"]] == ["10.71.0.2", "10.71.0.3", "10.71.0.5"]
    assert found["blocks_one_lost"] == ["10.71.0.0/30", "10.71.0.4/30"]
    # quorum gone: the owned block still gives addresses; a new block cannot be claimed, and says why
    assert found["offline_in_owned_block"] == "10.71.0.6"
    assert found["offline_new_block"].startswith("error: etcd is unreachable")
    assert "a new block can only be claimed in etcd" in found["offline_new_block"]
    # told to etcd later: w5's, and on a loaded machine maybe w2's too (the cluster may still be
    # electing a new leader when w2 comes, and an address of an owned block never waits for it)
    assert found["pending"] in (["10.71.0.6"], ["10.71.0.2", "10.71.0.6"])
    # back: what was allocated meanwhile is in etcd, under its workload
    assert found["pending_after"] == []
    assert found["recorded"] == {
        "10.71.0.1": "w1",
        "10.71.0.2": "w2",
        "10.71.0.3": "w3",
        "10.71.0.5": "w4",
        "10.71.0.6": "w5",
    }
    # and an allocation whose workload is gone is released after the grace time
    assert found["after_orphans"] == ["10.71.0.2", "10.71.0.3", "10.71.0.5", "10.71.0.6"]


# --- issue 25, finding 2: what etcd holds is hostile input; TLS and user authentication ---------


def etcdctl(netns: str, *args: str, tls: list[str] | None = None, endpoint: str = "127.0.0.1:23790") -> str:
    return sh(["etcdctl", "--endpoints", endpoint, *(tls or []), *args], netns=netns).stdout


def test_bad_and_foreign_records_in_etcd_are_skipped_never_fatal(etcd_netns: str, tmp_path: Path) -> None:
    """Fed 0.0.0.0/1 and a block over the fabric, routed used to install and announce them; a
    malformed key or value raised out of the listing and stopped the daemon."""
    start_cluster(etcd_netns, tmp_path, 1)
    prefix = "/hostile"
    records = {
        "ipam/v1/blocks/0.0.0.0-1": '{"node": "a"}',  # outside the pools, of the wrong size
        "ipam/v1/blocks/10.70.0.0-25": '{"node": "a"}',  # the wrong size
        "ipam/v1/blocks/10.0.0.0-26": '{"node": "a"}',  # over a's fabric address 10.0.0.1, no pool
        "ipam/v1/blocks/10.70.1.0-26": '{"node": "a", "claimed": 1}',  # a's, and fine
        "ipam/v1/blocks/10.70.6.0-26": '{"node": "b", "claimed": 1}',  # b's: never a's
        "ipam/v1/blocks/10.70.2.0-26": "{not json",
        "ipam/v1/blocks/10.70.3.0-26": '{"owner": "a"}',
        "ipam/v1/blocks/10.70.4.0-26": '{"node": "a b; rm -rf /"}',
        "ipam/v1/blocks/10.70.5.1-26": '{"node": "a"}',  # host bits set
        "ipam/v1/blocks/garbage": '{"node": "a"}',
        "ipam/v1/addresses/10.70.1.5": "[1, 2]",
        "ipam/v1/addresses/not-an-ip": '{"node": "a", "workload": "w"}',
        "ipam/v1/addresses/10.70.1.6": '{"node": "a"}',
    }
    for key, value in records.items():
        etcdctl(etcd_netns, "put", f"{prefix}/{key}", value)
    args = {
        "pool": "10.70.0.0/16",
        "dir": str(tmp_path / "state"),
        "endpoints": ["127.0.0.1:23790"],
        "prefix": prefix,
    }
    found = run_case(etcd_netns, "hostile_records", args)
    assert found["owned"] == ["10.70.1.0/26"], found  # never 0.0.0.0/1, never over the fabric
    assert found["first"] == "10.70.1.1", found
    assert "outside" in found["over_fabric"], found
    assert "already given to workload (malformed record)" in found["malformed_holder"], found
    assert found["allocations"] == ["10.70.1.1"], found  # the unreadable ones skipped
    assert found["maintained"] is False  # upkeep ran through them
    # the listing has every well-formed record (routed deletes nobody's), never the malformed ones
    assert found["blocks"] == ["0.0.0.0/1", "10.0.0.0/26", "10.70.0.0/25", "10.70.1.0/26", "10.70.6.0/26"]
    assert "which belongs to node b" in found["foreign"], found


def _certificates(where: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl."""
    files = {
        name: where / name
        for name in ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")
    }
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sh(
        [
            "openssl",
            "req",
            "-x509",
            *ec,
            "-keyout",
            str(files["ca.key"]),
            "-out",
            str(files["ca.pem"]),
            "-days",
            "2",
            "-subj",
            "/CN=rt-test-ca",
        ]
    )
    for role, subject, extension in (
        ("server", "/CN=rt-etcd", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", "/CN=root", "extendedKeyUsage=clientAuth"),
    ):
        csr, ext = where / f"{role}.csr", where / f"{role}.ext"
        ext.write_text(extension + "\n")
        sh(
            [
                "openssl",
                "req",
                "-new",
                *ec,
                "-keyout",
                str(files[f"{role}.key"]),
                "-out",
                str(csr),
                "-subj",
                subject,
            ]
        )
        sh(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(files["ca.pem"]),
                "-CAkey",
                str(files["ca.key"]),
                "-CAcreateserial",
                "-out",
                str(files[f"{role}.pem"]),
                "-days",
                "2",
                "-extfile",
                str(ext),
            ]
        )
    for path in files.values():
        path.chmod(0o600)
    return files


def test_etcd_over_tls_with_client_certificates_and_user_authentication(
    etcd_netns: str, tmp_path: Path
) -> None:
    files = _certificates(tmp_path)
    url = "https://127.0.0.1:23795"
    argv = [
        "etcd",
        "--name",
        "s0",
        "--data-dir",
        str(tmp_path / "s0"),
        "--listen-client-urls",
        url,
        "--advertise-client-urls",
        url,
        "--listen-peer-urls",
        "http://127.0.0.1:23895",
        "--cert-file",
        str(files["server.pem"]),
        "--key-file",
        str(files["server.key"]),
        "--trusted-ca-file",
        str(files["ca.pem"]),
        "--client-cert-auth",
    ]
    with open(tmp_path / "s0.log", "ab") as out:
        subprocess.Popen(["ip", "netns", "exec", etcd_netns, *argv], stdout=out, stderr=subprocess.STDOUT)
    tls = [
        "--cacert",
        str(files["ca.pem"]),
        "--cert",
        str(files["client.pem"]),
        "--key",
        str(files["client.key"]),
    ]
    wait_until(
        lambda: (
            sh(
                ["etcdctl", "--endpoints", url, *tls, "endpoint", "health"], netns=etcd_netns, check=False
            ).returncode
        ),
        0,
        timeout=30,
        what="etcd over TLS healthy",
    )
    etcdctl(etcd_netns, "user", "add", "root:rt-S3cret'\"", "--interactive=false", tls=tls, endpoint=url)
    etcdctl(etcd_netns, "auth", "enable", tls=tls, endpoint=url)
    password = tmp_path / "etcd.password"
    password.write_text("rt-S3cret'\"\n")
    password.chmod(0o600)
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-it\n")
    wrong.chmod(0o600)
    client = f"cert_file: {files['client.pem']}, key_file: {files['client.key']}"
    extra = {
        "right": f", tls: {{ca_file: {files['ca.pem']}, {client}}}, username: root, password_file: {password}",
        "no_cert": f", tls: {{ca_file: {files['ca.pem']}}}, username: root, password_file: {password}",
        "bad_password": f", tls: {{ca_file: {files['ca.pem']}, {client}}}, username: root, password_file: {wrong}",
    }
    args = {
        "pool": "10.70.0.0/24",
        "dir": str(tmp_path / "state"),
        "endpoints": [url],
        "prefix": "/tls",
        "extra": extra,
    }
    found = run_case(etcd_netns, "secured", args)
    assert found["right"] == "10.70.0.1", found
    assert found["no_cert"].startswith("error: etcd is unreachable"), found
    assert (
        found["bad_password"].startswith("error: etcd is unreachable")
        and "authentication failed" in found["bad_password"]
    ), found
    # the block is in etcd, claimed by "right" through TLS and as root
    assert '"node": "right"' in etcdctl(
        etcd_netns,
        "get",
        "--prefix",
        "/tls/ipam/v1/blocks/",
        tls=[*tls, "--user", "root:rt-S3cret'\""],
        endpoint=url,
    )
