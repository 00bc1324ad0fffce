"""Shared pieces of the benchmarks: a two-node lab with a BIRD2 injector, receivers, memory."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bgp import procfs
from routed.lab import runner
from routed.lab.generate import LabPlan, generate
from routed.lab.topology import Topology, load_topology

LABS = Path(__file__).resolve().parents[1] / "labs"
RESULTS = Path(os.environ.get("ROUTED_BENCH_RESULTS", Path(__file__).resolve().parents[1] / "bench-results"))
RECEIVERS = ("routed", "bird", "frr")


def prefixes(count: int, base: int = (10 << 24) | (100 << 16)) -> list[str]:
    """`count` distinct /32s from 10.100.0.0 up."""
    return [
        f"{(v >> 24) & 255}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}" for v in range(base, base + count)
    ]


def injector_config(count: int) -> str:
    """BIRD2 with `count` static /32s, kept back until `birdc enable injected`, and a session to rx."""
    routes = "\n".join(f"    route {ip}/32 via 10.0.0.1;" for ip in prefixes(count))
    return textwrap.dedent(f"""\
        router id 10.0.0.1;
        protocol device {{}}
        protocol static injected {{
            disabled;
            ipv4;
        {routes}
        }}
        protocol bgp receiver {{
            local 10.0.0.1 as 64512;
            neighbor 10.0.0.2 as 64512;
            hold time 90;
            connect retry time 1;
            ipv4 {{ import none; export where proto = "injected"; next hop self; }};
        }}
    """)


def receiver_files(kind: str, hold_time: int = 90) -> dict[str, tuple[str, str]]:
    """{file name: (content, target path in the node)} for a receiving daemon."""
    if kind == "routed":
        return {
            "rx.yaml": (
                textwrap.dedent(f"""\
            name: rx
            router_id: 10.0.0.2
            asn: 64512
            fabric: {{interface: eth1, address: 10.0.0.2}}
            pools: [10.100.0.0/14]
            bgp: {{hold_time: {hold_time}}}
            peers:
              - {{address: 10.0.0.1, kind: mesh}}
            """),
                "/etc/routed/routed.yaml",
            )
        }
    if kind == "bird":
        return {
            "rx.conf": (
                textwrap.dedent(f"""\
            router id 10.0.0.2;
            protocol device {{}}
            protocol direct {{ ipv4; interface "eth*"; }}
            protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; merge paths on; }}
            protocol bgp inj {{
                local 10.0.0.2 as 64512;
                neighbor 10.0.0.1 as 64512;
                hold time {hold_time};
                ipv4 {{ import all; export none; }};
            }}
            """),
                "/etc/bird/bird.conf",
            )
        }
    if kind == "frr":
        return {
            "frr.conf": (
                textwrap.dedent(f"""\
            frr defaults traditional
            hostname rx
            router bgp 64512
             bgp router-id 10.0.0.2
             no bgp ebgp-requires-policy
             no bgp network import-check
             neighbor 10.0.0.1 remote-as 64512
             neighbor 10.0.0.1 timers 30 {hold_time}
             address-family ipv4 unicast
              neighbor 10.0.0.1 activate
             exit-address-family
            """),
                "/etc/frr/frr.conf",
            )
        }
    raise ValueError(kind)


@contextmanager
def generated_lab(topology: str, files: dict[str, str]) -> Iterator[Topology]:
    """Bring up a topology written on the fly (with its bound files) for the block."""
    with tempfile.TemporaryDirectory(prefix="routed-bench-") as tmp:
        base = Path(tmp)
        for name, content in files.items():
            (base / name).write_text(content)
        (base / "bench.clab.yml").write_text(topology)
        topo = load_topology(base / "bench.clab.yml", name=f"b{uuid.uuid4().hex[:6]}", prefix="rt")
        runner.up(topo)
        try:
            yield topo
        finally:
            runner.down(topo)


def write_generated(plan: LabPlan, base: Path, netns_name: str) -> Topology:
    """`routed lab generate`'s files for plan written under base, loaded as a topology whose
    namespaces are rt-<netns_name>-<node>."""
    for name, text in generate(plan).items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text)
    return load_topology(base / f"{plan.name}.clab.yml", name=netns_name, prefix="rt")


def reflector_topology(daemon: str, file_suffix: str, target: str) -> str:
    """A reflector `rr` (10.0.0.1) and hosts h1, h2 (.11, .12) on a bridging switch, each node
    running `daemon` with its own config file `<node>.<file_suffix>` bound at `target`."""
    nodes = ""
    for node, address in (("rr", "10.0.0.1"), ("h1", "10.0.0.11"), ("h2", "10.0.0.12")):
        nodes += textwrap.indent(
            textwrap.dedent(f"""\
            {node}:
              kind: linux
              binds: ["{node}.{file_suffix}:{target}:ro"]
              env: {{NODE_DAEMON: {daemon}}}
              exec: [ip addr add {address}/24 dev eth1, sysctl -qw net.ipv4.ip_forward=1]
            """),
            "    ",
        )
    return (
        textwrap.dedent("""\
        name: rrlab
        topology:
          nodes:
            sw:
              kind: linux
              env: {NODE_DAEMON: none}
              exec: [ip link add br0 type bridge, ip link set br0 up, ip link set eth1 master br0,
                     ip link set eth2 master br0, ip link set eth3 master br0]
        """)
        + nodes
        + "  links:\n"
        + "".join(
            f'    - endpoints: ["sw:eth{i}", "{n}:eth1"]\n' for i, n in ((1, "rr"), (2, "h1"), (3, "h2"))
        )
    )


@contextmanager
def two_node_lab(receiver: str, count: int, hold_time: int = 90) -> Iterator[Topology]:
    """inj (BIRD2 with `count` static /32s) --eth1-- rx (the receiver), up for the block."""
    files = {"inj.conf": injector_config(count)}
    binds = []
    for name, (content, target) in receiver_files(receiver, hold_time).items():
        files[name] = content
        binds.append(f"{name}:{target}:ro")
    # ROUTED_RAW_UPDATES=0 in the bench's environment: routed's ExaBGP decodes every UPDATE
    # (routed before issue 18), for before/after figures in one run
    raw = os.environ.get("ROUTED_RAW_UPDATES")
    raw_updates = f", ROUTED_RAW_UPDATES: '{raw}'" if raw is not None else ""
    topology = textwrap.dedent(f"""\
        name: bench
        topology:
          nodes:
            inj:
              kind: linux
              binds: ["inj.conf:/etc/bird/bird.conf:ro"]
              env: {{NODE_DAEMON: bird}}
              exec: [ip addr add 10.0.0.1/24 dev eth1]
            rx:
              kind: linux
              binds: {json.dumps(binds)}
              env: {{NODE_DAEMON: {receiver}{raw_updates}}}
              exec: [ip addr add 10.0.0.2/24 dev eth1]
          links:
            - endpoints: ["inj:eth1", "rx:eth1"]
        """)
    with generated_lab(topology, files) as topo:
        yield topo


def node_exec(topo: Topology, node: str, *argv: str, check: bool = True) -> str:
    result = runner.run_in_node(topo, node, list(argv), capture=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} on {node}: {result.stderr or result.stdout}")
    return result.stdout


def birdc(topo: Topology, node: str, *args: str) -> str:
    return node_exec(topo, node, "birdc", "-s", "/run/bird/bird.ctl", *args, check=False)


def processes(netns: str) -> list[int]:
    inode = procfs.ns_inode(f"/run/netns/{netns}")
    return procfs.in_namespaces({inode} if inode is not None else set())


def pid_in_node(topo: Topology, node: str, needle: str) -> int | None:
    """The first process of the node whose command line contains `needle` (not a shell or nsenter)."""
    for pid in processes(topo.node(node).netns):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmdline and not cmdline.startswith(("sh ", "nsenter")):
            return pid
    return None


def daemon_cpu_s(netns: str) -> dict[str, float]:
    """CPU seconds (user + system) used so far per daemon process in the node."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for pid in processes(netns):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if cmdline.startswith(("sleep", "sh ", "nsenter")) or not cmdline:
            continue
        used[cmdline[:80]] = used.get(cmdline[:80], 0.0) + (int(stat[11]) + int(stat[12])) / ticks
    return used


def daemon_memory_kb(netns: str) -> dict[str, int]:
    """Peak RSS (VmHWM) per daemon process in the node, by command, idle holders left out."""
    memory: dict[str, int] = {}
    for pid in processes(netns):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if cmdline.startswith(("sleep", "sh ", "nsenter")) or not cmdline:
            continue
        hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
        memory[cmdline[:80]] = memory.get(cmdline[:80], 0) + hwm
    return memory


def wait_ready(topo: Topology, receiver: str, timeout: float = 30) -> None:
    """Until the injector answers and the receiver's daemon listens for BGP."""
    deadline = time.monotonic() + timeout
    while "ready" not in birdc(topo, "inj", "show", "status"):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the BIRD2 injector does not answer; its log:\n{runner.state_dir(topo) / 'logs'}"
            )
        time.sleep(0.1)
    while time.monotonic() < deadline:
        if "Established" in birdc(topo, "inj", "show", "protocols", "receiver"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{receiver} on rx did not establish its session within {timeout}s")


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


BUSYBOX_APPLETS = ("sh", "ip", "ping", "sleep", "cat", "echo", "httpd", "wget", "mkdir", "true")


def busybox_tar(root: Path) -> Path:
    """A container image with no registry (shared/notes/podman.md): busybox-static and its
    applets as ROOT/image, tarred as ROOT/bb.tar for `podman import` / `docker import`."""
    (root / "image" / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "image" / "bin" / "busybox")
    for applet in BUSYBOX_APPLETS:
        (root / "image" / "bin" / applet).symlink_to("busybox")
    with tarfile.open(root / "bb.tar", "w") as tar:
        tar.add(root / "image", arcname=".")
    return root / "bb.tar"


def busybox_oci(
    root: Path, name: str = "docker.io/library/bb:latest", cmd: tuple[str, ...] = ("/bin/sh",)
) -> Path:
    """The same busybox as an OCI image layout in a tar, for `ctr image import` (containerd
    takes no plain rootfs tar): one layer, its config, a manifest, the index naming it."""
    layer = busybox_tar(root).read_bytes()
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer_ref = blob(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": list(cmd)},
        "rootfs": {"type": "layers", "diff_ids": [layer_ref["digest"]]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **blob(json.dumps(config).encode()),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_ref}],
    }
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **blob(json.dumps(manifest).encode()),
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": "latest",
                },
            }
        ],
    }
    out = root / "bb-oci.tar"
    with tarfile.open(out, "w") as tar:
        for path, data in [
            ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
            ("index.json", json.dumps(index).encode()),
            *((f"blobs/sha256/{d.split(':')[1]}", b) for d, b in blobs.items()),
        ]:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out
