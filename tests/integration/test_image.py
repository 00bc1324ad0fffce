"""The container image the labs name (routed:latest), built by scripts/build-image.sh and run
the way containerlab runs nodes: privileged, no Docker network, CLAB_INTFS set, the config
bound at /etc/routed/routed.yaml, links added as veths after start, `exec:` commands run with
`docker exec`. A reflector and two hosts; each host's workload reaches the other's.

Where `--privileged` cannot be had (these machines' bounding set lacks CAP_SYS_RESOURCE, and
runc then fails with "unable to apply caps"), nodes get what privileged would give that the
machine has: every capability in our bounding set, no seccomp or AppArmor profile, /proc and
/sys unmasked.

The test starts its own dockerd (private data root and socket, no bridge, no iptables: it
touches nothing of the machine's network) and stops it by pid; the fabric's bridge lives in
a namespace of the test's own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import wait_until

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
NODES = {
    "rr1": (
        "10.0.0.1",
        "role: reflector\npeers:\n"
        "  - {address: 10.0.0.11, kind: client}\n  - {address: 10.0.0.12, kind: client}\n",
    ),
    "h1": (
        "10.0.0.11",
        "peers: [{address: 10.0.0.1, kind: reflector}]\nipam: {mode: static, blocks: [10.65.1.0/26]}\n",
    ),
    "h2": (
        "10.0.0.12",
        "peers: [{address: 10.0.0.1, kind: reflector}]\nipam: {mode: static, blocks: [10.65.2.0/26]}\n",
    ),
}


def config(name: str, address: str, extra: str) -> str:
    return (
        textwrap.dedent(f"""\
        name: {name}
        router_id: {address}
        asn: 64512
        fabric: {{interface: eth1, address: {address}}}
        pools: [10.65.0.0/16]
        """)
        + extra
    )


# capability numbers (linux/capability.h) -> names, as Docker 20.10 knows them; 38-40
# (PERFMON, BPF, CHECKPOINT_RESTORE) are newer than it
CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
]


def bounding_set() -> list[str]:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("CapBnd:"))
    mask = int(line.split()[1], 16)
    return [name for bit, name in enumerate(CAPABILITIES) if mask & (1 << bit)]


class Engine:
    """A dockerd of the test's own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{root}/docker.sock"}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.root / "dockerd.log", "wb")  # noqa: SIM115 - dockerd holds it while it runs
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "dockerd.pid"),
                "--host",
                f"unix://{self.root}/docker.sock",
                "--bridge",
                "none",
                "--iptables=false",
                "--ip-masq=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: self.docker("info", check=False).returncode, 0, timeout=60, what="dockerd up")

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def privileged(self, image: str) -> list[str]:
        """`--privileged` if this machine allows it, else as near to it as the machine allows."""
        tried = self.docker(
            "run", "--rm", "--privileged", "--network", "none", "--entrypoint", "true", image, check=False
        )
        if tried.returncode == 0:
            return ["--privileged"]
        assert "unable to apply caps" in tried.stderr, tried.stderr
        unconfined = ["seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"]
        return [arg for cap in bounding_set() for arg in ("--cap-add", cap)] + [
            arg for opt in unconfined for arg in ("--security-opt", opt)
        ]

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def mounts_under(root: Path) -> list[str]:
    prefix = f"{root}/"
    return [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(prefix)
    ]


@pytest.fixture
def engine() -> Iterator[Engine]:
    root = Path("/tmp") / f"rt-docker-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    running = Engine(root)
    try:
        running.start()
        yield running
    finally:
        if running.process is not None:
            for name in running.docker("ps", "-aq", check=False).stdout.split():
                running.docker("rm", "-f", name, check=False)
        running.stop()
        # dockerd leaves its default netns bind-mounted under its exec root (exec/netns/default);
        # `umount -R exec` did nothing (exec itself is no mount point), and the directory stayed
        for mounted in sorted(mounts_under(root), key=len, reverse=True):
            subprocess.run(["umount", "-l", mounted], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.long(130)
def test_image_builds_and_runs_as_containerlab_nodes(engine: Engine, tmp_path: Path) -> None:
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-image.sh")],
        env=engine.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert "built routed:latest" in built.stdout

    privileged = engine.privileged("routed:latest")
    tag = uuid.uuid4().hex[:8]
    switch = f"rt-{tag}-sw"
    subprocess.run(["ip", "netns", "add", switch], check=True)
    try:
        subprocess.run(["ip", "-n", switch, "link", "add", "br0", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", switch, "link", "set", "br0", "up"], check=True)
        for name, (address, extra) in NODES.items():
            file = tmp_path / f"{name}.yaml"
            file.write_text(config(name, address, extra))
            engine.docker(
                "run",
                "-d",
                *privileged,
                "--network",
                "none",
                "--name",
                f"rt-{tag}-{name}",
                "--hostname",
                name,
                "-e",
                "CLAB_INTFS=1",
                "-e",
                f"CLAB_NODE_NAME={name}",
                "-v",
                f"{file}:/etc/routed/routed.yaml:ro",
                "routed:latest",
            )
            pid = engine.docker("inspect", "-f", "{{.State.Pid}}", f"rt-{tag}-{name}").stdout.strip()
            # the link, as containerlab makes it: eth1 in the node, its peer on the switch
            subprocess.run(
                [
                    "ip",
                    "-n",
                    switch,
                    "link",
                    "add",
                    name,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth1",
                    "netns",
                    pid,
                ],
                check=True,
            )
            subprocess.run(["ip", "-n", switch, "link", "set", name, "master", "br0", "up"], check=True)
            for command in (f"ip addr add {address}/24 dev eth1", "ip link set eth1 up"):
                engine.docker("exec", f"rt-{tag}-{name}", "sh", "-c", command)

        def node(name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            return engine.docker("exec", f"rt-{tag}-{name}", *argv, check=check)

        addresses = {}
        for name in ("h1", "h2"):
            node(name, "ip", "netns", "add", "web")
            node(name, "routed", "workload", "add", f"{name}-web", "--netns", "web")
            (web,) = json.loads(node(name, "routed", "workload", "list", "--json").stdout)
            addresses[name] = web["ips"][0]
        assert addresses == {"h1": "10.65.1.1", "h2": "10.65.2.1"}

        def peers_up(name: str) -> list[str]:
            out = node(name, "routed", "status", "--json", check=False).stdout
            return (
                sorted(p["address"] for p in json.loads(out)["bgp"]["peers"] if p["state"] == "up")
                if out
                else []
            )

        wait_until(lambda: peers_up("rr1"), ["10.0.0.11", "10.0.0.12"], timeout=60, what="rr1's sessions up")
        for src, dst in (("h1", "h2"), ("h2", "h1")):
            wait_until(
                lambda s=src, d=dst: (
                    node(
                        s, "ip", "netns", "exec", "web", "ping", "-c1", "-W1", addresses[d], check=False
                    ).returncode
                ),
                0,
                timeout=30,
                what=f"{src}'s workload reaches {dst}'s",
            )
        routes = node("h1", "ip", "route", "show", "proto", "routed").stdout
        assert "10.65.2.0/26 via 10.0.0.12 dev eth1" in routes, routes
        # the daemon runs from the image's own install, as the entrypoint started it
        assert "/opt/routed/bin/python" in node("h1", "ps", "-eo", "args").stdout
    finally:
        subprocess.run(["ip", "netns", "del", switch], capture_output=True)
