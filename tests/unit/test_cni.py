"""The CNI plugin against a fake daemon: every command, the environment and stdin
combinations, each error code, and idempotency. The real daemon: tests/integration/test_cni.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from routed import api
from routed.cni import spec
from routed.cni.plugin import run
from tests.support.nodes import node_yaml

CONTAINER = "3f1c0a9e8b7d"


class FakeDaemon:
    def __init__(self) -> None:
        self.workloads: dict[str, dict[str, Any]] = {}
        self.running = True
        self.calls: list[str] = []
        self.problems: list[str] = []

    def __call__(self, socket: str, op: str, timeout: float = 30.0, **fields: Any) -> Any:
        self.calls.append(op)
        if not self.running:
            raise api.DaemonNotRunning(socket)
        if op == "workload.add":
            if fields["ips"] == ["10.65.2.9"]:
                raise api.ApiError("10.65.2.9 is inside block 10.65.2.0/26, which belongs to ...", 2)
            existing = self.workloads.get(fields["id"])
            if existing is None:
                existing = {
                    "id": fields["id"],
                    "netns": fields["netns"],
                    "ifname": fields["ifname"],
                    "ips": fields["ips"] or [f"10.65.1.{len(self.workloads) + 1}"],
                    "host_ifname": f"rt{len(self.workloads):011x}",
                    "network": fields.get("network") or None,
                }
                self.workloads[fields["id"]] = existing
            return existing
        if op == "workload.del":
            if self.workloads.pop(fields["id"], None) is None:
                raise api.ApiError(f"no workload {fields['id']!r} on this node", 1)
            return {}
        if op == "workload.list":
            return list(self.workloads.values())
        if op == "workload.check":
            if fields["id"] not in self.workloads:
                raise api.ApiError(f"no workload {fields['id']!r} on this node", 1)
            return {**self.workloads[fields["id"]], "problems": self.problems}
        if op == "status":
            return {}
        raise AssertionError(op)


def conf(**extra: Any) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "routed", "type": "routed", **extra}).encode()


def env(command: str, netns: str, **extra: str) -> dict[str, str]:
    base = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": CONTAINER,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
    }
    return {**base, **extra}


@pytest.fixture
def netns(tmp_path: Path) -> str:
    path = tmp_path / "netns"
    path.write_text("")
    return str(path)


def test_add_result_and_idempotency(netns: str) -> None:
    daemon = FakeDaemon()
    dns = {"nameservers": ["10.0.0.53"]}
    out, code = run(env("ADD", netns), conf(dns=dns), daemon)
    assert code == 0 and out is not None
    assert out == {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "rt00000000000", "mac": "ee:ee:ee:ee:ee:ee"},
            {"name": "eth0", "sandbox": netns},
        ],
        "ips": [{"address": "10.65.1.1/32", "gateway": "169.254.1.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
        "dns": dns,
    }
    assert daemon.workloads[f"cni-{CONTAINER}:eth0"]["ifname"] == "eth0"
    again, _ = run(env("ADD", netns), conf(dns=dns), daemon)
    assert again == out  # the same container and ifname twice: the same answer
    legacy, _ = run(
        env("ADD", netns), json.dumps({"cniVersion": "0.4.0", "name": "r", "type": "routed"}).encode(), daemon
    )
    assert legacy is not None and legacy["ips"][0]["version"] == "4"  # 0.x results carry it


def test_add_after_another_plugin_keeps_its_result(netns: str) -> None:
    previous = {"interfaces": [{"name": "lo"}], "ips": [], "routes": []}
    out, _ = run(env("ADD", netns), conf(prevResult=previous), FakeDaemon())
    assert out is not None and out["interfaces"][0]["name"] == "lo"
    assert out["ips"][0]["interface"] == 2  # our container interface, after theirs


def test_requested_addresses_from_runtime_config_or_args(netns: str) -> None:
    daemon = FakeDaemon()
    run(env("ADD", netns), conf(runtimeConfig={"ips": ["10.65.1.40/32"]}), daemon)
    assert daemon.workloads[f"cni-{CONTAINER}:eth0"]["ips"] == ["10.65.1.40"]
    other = FakeDaemon()
    run(env("ADD", netns, CNI_ARGS="IgnoreUnknown=1;IP=10.65.1.41"), conf(), other)
    assert other.workloads[f"cni-{CONTAINER}:eth0"]["ips"] == ["10.65.1.41"]
    refused, code = run(env("ADD", netns, CNI_ARGS="IP=10.65.2.9"), conf(), FakeDaemon())
    assert code == 1 and refused is not None and refused["code"] == spec.ADDRESS_REFUSED


def test_del_is_idempotent(netns: str, tmp_path: Path) -> None:
    daemon = FakeDaemon()
    run(env("ADD", netns), conf(), daemon)
    assert run(env("DEL", netns), conf(), daemon) == (None, 0)
    assert run(env("DEL", netns), conf(), daemon) == (None, 0)  # already gone
    assert run(env("DEL", "", CNI_NETNS=""), conf(), daemon) == (None, 0)  # netns gone too
    # daemon down: cleaned up without it, from the node's own state (nothing there here)
    node = tmp_path / "node.yaml"
    node.write_text(node_yaml(f"state_dir: {tmp_path / 'state'}"))
    daemon.running = False
    assert run(env("DEL", netns), conf(routedConfig=str(node)), daemon) == (None, 0)
    out, code = run(env("DEL", netns), conf(routedConfig=str(tmp_path / "none.yaml")), daemon)
    assert code == 1 and out is not None and out["code"] == spec.TRY_AGAIN_LATER


def test_check_reports_drift(netns: str) -> None:
    daemon = FakeDaemon()
    added, _ = run(env("ADD", netns), conf(), daemon)
    assert run(env("CHECK", netns), conf(prevResult=added), daemon) == (None, 0)
    daemon.problems = ["route 10.65.1.1/32 dev rt0 is not in the kernel"]
    out, code = run(env("CHECK", netns), conf(prevResult=added), daemon)
    assert (
        code == 1
        and out is not None
        and out["code"] == spec.CHECK_FAILED
        and "not in the kernel" in out["msg"]
    )
    daemon.problems = []
    other = {**(added or {}), "ips": [{"address": "10.65.1.99/32"}]}
    out, _ = run(env("CHECK", netns), conf(prevResult=other), daemon)
    assert out is not None and "the runtime has ['10.65.1.99']" in out["msg"]


def test_version_status_and_gc(netns: str) -> None:
    out, code = run({"CNI_COMMAND": "VERSION"}, b"", FakeDaemon())
    assert code == 0 and out == {"cniVersion": "1.1.0", "supportedVersions": list(spec.SUPPORTED_VERSIONS)}
    daemon = FakeDaemon()
    assert run({"CNI_COMMAND": "STATUS"}, conf(cniVersion="1.1.0"), daemon) == (None, 0)
    daemon.running = False
    out, _ = run({"CNI_COMMAND": "STATUS"}, conf(cniVersion="1.1.0"), daemon)
    assert out is not None and out["code"] == spec.NOT_AVAILABLE
    daemon = FakeDaemon()
    run(env("ADD", netns), conf(), daemon)
    run(env("ADD", netns, CNI_CONTAINERID="gone1"), conf(), daemon)
    daemon.workloads["manual"] = {"id": "manual"}
    # issue 25, finding 10: another runtime's (or another routed network's) container, unknown
    # to this network's runtime, and one attached before networks were recorded
    run(env("ADD", netns, CNI_CONTAINERID="theirs"), conf(name="containerd-routed"), daemon)
    daemon.workloads["cni-legacy:eth0"] = {"id": "cni-legacy:eth0", "network": None}
    valid = [{"containerID": CONTAINER, "ifname": "eth0"}]
    assert run(
        {"CNI_COMMAND": "GC"}, conf(cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid}), daemon
    ) == (None, 0)
    assert sorted(daemon.workloads) == [
        f"cni-{CONTAINER}:eth0",
        "cni-legacy:eth0",
        "cni-theirs:eth0",
        "manual",
    ]
    # the other network's own GC, with nothing valid, takes its container and nothing else
    run({"CNI_COMMAND": "GC"}, conf(cniVersion="1.1.0", name="containerd-routed"), daemon)
    assert sorted(daemon.workloads) == [f"cni-{CONTAINER}:eth0", "cni-legacy:eth0", "manual"]


@pytest.mark.parametrize(
    ("environment", "stdin", "code", "needle"),
    [
        (
            {"CNI_COMMAND": "ADD"},
            conf(),
            spec.INVALID_ENVIRONMENT,
            "CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS not set",
        ),
        ({"CNI_COMMAND": "FROB"}, conf(), spec.INVALID_ENVIRONMENT, "CNI_COMMAND is 'FROB'"),
        ({}, conf(), spec.INVALID_ENVIRONMENT, "CNI_COMMAND is ''"),
        (None, b"{not json", spec.DECODING_FAILURE, "not JSON"),
        (None, b"[1]", spec.DECODING_FAILURE, "JSON object"),
        (None, conf(cniVersion="0.2.0"), spec.INCOMPATIBLE_VERSION, "cniVersion 0.2.0 is not supported"),
        (None, json.dumps({"name": "r", "type": "routed"}).encode(), spec.INVALID_CONFIG, "no cniVersion"),
        (None, conf(name=""), spec.INVALID_CONFIG, "no 'name'"),
        ({"CNI_IFNAME": "a-very-long-ifname0"}, conf(), spec.INVALID_ENVIRONMENT, "not an interface name"),
        ({"CNI_CONTAINERID": "-bad"}, conf(), spec.INVALID_ENVIRONMENT, "not a container id"),
        ({"CNI_NETNS": "/nonexistent/netns"}, conf(), spec.INVALID_ENVIRONMENT, "does not exist"),
        ({"down": "1"}, conf(), spec.TRY_AGAIN_LATER, "routed is not running"),
    ],
)
def test_bad_input_is_an_error_json_and_leaves_nothing(
    netns: str, environment: dict[str, str] | None, stdin: bytes, code: int, needle: str
) -> None:
    daemon = FakeDaemon()
    full = env("ADD", netns)
    if environment == {} or (environment is not None and "CNI_COMMAND" in environment):
        full = dict(environment)
    elif environment:
        daemon.running = "down" not in environment
        full.update({k: v for k, v in environment.items() if k != "down"})
    out, exit_code = run(full, stdin, daemon)
    assert exit_code == 1 and out is not None
    assert out["code"] == code and needle in out["msg"], out
    assert set(out) <= {"cniVersion", "code", "msg", "details"}
    assert daemon.workloads == {}


def test_long_container_ids_fit_a_workload_id() -> None:
    long_id = "a" * 200
    wid = spec.workload_id(long_id, "eth0")
    assert len(wid) <= 128 and wid.startswith("cni-") and wid.endswith(":eth0")
    assert wid != spec.workload_id("a" * 199 + "b", "eth0")
    assert spec.workload_id("abc", "net1") == "cni-abc:net1"


def test_shipped_conflist_is_what_install_writes(tmp_path: Path) -> None:
    from routed.cni.install import conflist, install

    shipped = Path(__file__).parents[2] / "config" / "cni" / "routed.conflist"
    assert json.loads(shipped.read_text()) == conflist()
    done = install(tmp_path / "bin", tmp_path / "net.d", "/run/x.sock", "/etc/x.yaml")
    plugin = tmp_path / "bin" / "routed"
    assert plugin.read_text().startswith(f"#!{sys.executable} -IS\n") and len(done) == 2
    # it runs as a runtime runs it; with no daemon to relay to, the full plugin answers
    ran = subprocess.run(
        [str(plugin)],
        input=b'{"cniVersion": "1.0.0", "socket": "/nonexistent.sock"}',
        env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin"},
        capture_output=True,
        check=True,
    )
    assert json.loads(ran.stdout)["supportedVersions"][-1] == "1.1.0"
    written = json.loads((tmp_path / "net.d" / "10-routed.conflist").read_text())
    assert written["plugins"][0]["socket"] == "/run/x.sock"
    assert written["plugins"][0]["routedConfig"] == "/etc/x.yaml"
    again = install(tmp_path / "bin", tmp_path / "net.d", "/run/y.sock", "/etc/x.yaml")
    assert "left as it is" in again[1]  # an admin's edits are kept unless --force
