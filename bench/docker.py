"""`docker run` on routed's network against Docker's own bridge network.

A real dockerd (Debian's docker.io) in h1 of labs/quickstart.clab.yml, an image imported from
busybox-static; `--trials` times each, interleaved: `docker run --rm --network NET bb true`,
timed from the command to its exit (create, network, start, the process, stop, removal):
- routed: `docker network create -d routed --ipam-driver routed` (address from h1's block,
  veth made by routed, /32 in the kernel and announced before CreateEndpoint answers);
- bridge: Docker's default `bridge` network (docker0, its own IPAM, iptables).

    python -m bench.docker --trials 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import LABS, busybox_tar, save
from bench.convergence import summarize
from routed.lab import runner
from routed.lab.state import state_dir
from routed.lab.topology import Topology, load_topology

DOCKERD = "dockerd --storage-driver vfs --live-restore >> /tmp/dockerd-bench.log 2>&1 &"


def in_h1(topo: Topology, *argv: str, timeout: float = 120) -> str:
    result = runner.run_in_node(topo, "h1", list(argv), capture=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr or result.stdout}")
    return result.stdout


def daemon_calls(topo: Topology) -> list[dict[str, float]]:
    """Each container's plugin calls as h1's daemon logged them (`docker_call`, in ms)."""
    found: list[dict[str, float]] = []
    current: dict[str, float] = {}
    for line in (state_dir(topo) / "logs" / "h1.log").read_text().splitlines():
        for done, name in (
            ("event=docker_endpoint_created ", "CreateEndpoint"),
            ("event=docker_endpoint_deleted ", "DeleteEndpoint"),
        ):
            if done in line:
                fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
                for stage in ("store", "ipam", "attach", "detach", "save", "tables", "fib"):
                    if stage in fields:
                        current[f"{name}.{stage}"] = float(fields[stage])
        if "event=docker_call " in line:
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            call = fields["call"].removeprefix("NetworkDriver.").removeprefix("IpamDriver.")
            current[call] = float(fields["ms"])
            if call == "ReleaseAddress":  # a container's last call
                found.append(current)
                current = {}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args(argv)
    topo = load_topology(LABS / "quickstart.clab.yml", name=f"d{os.getpid()}", prefix="rt")
    scratch = Path(tempfile.mkdtemp(prefix="rt-bench-docker-", dir="/tmp"))
    runner.up(topo)
    samples: dict[str, list[float]] = {"routed": [], "bridge": [], "user bridge": []}
    try:
        tar = busybox_tar(scratch)
        in_h1(topo, "sh", "-c", DOCKERD)
        deadline = time.monotonic() + 30
        while runner.run_in_node(topo, "h1", ["docker", "info"], capture=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("dockerd did not start in h1")
            time.sleep(0.2)
        in_h1(topo, "docker", "import", str(tar), "bb:latest")
        in_h1(topo, "docker", "network", "create", "-d", "routed", "--ipam-driver", "routed", "rnet")
        in_h1(topo, "docker", "network", "create", "-d", "bridge", "--subnet", "10.98.0.0/24", "ubr")
        for network in (
            "rnet",
            "bridge",
            "ubr",
        ):  # warm-up: first use loads the plugin, creates docker0 rules
            in_h1(topo, "docker", "run", "--rm", "--network", network, "bb:latest", "true")
        for _ in range(args.trials):
            for kind, network in (("routed", "rnet"), ("bridge", "bridge"), ("user bridge", "ubr")):
                started = time.monotonic()
                in_h1(topo, "docker", "run", "--rm", "--network", network, "bb:latest", "true")
                samples[kind].append((time.monotonic() - started) * 1000)
        calls = daemon_calls(topo)
    finally:
        runner.run_in_node(
            topo, "h1", ["sh", "-c", "docker rm -f $(docker ps -aq) 2>/dev/null"], capture=True
        )
        runner.run_in_node(
            topo, "h1", ["sh", "-c", "kill $(cat /var/run/docker.pid) 2>/dev/null; sleep 2"], capture=True
        )
        runner.down(topo)
        shutil.rmtree(scratch, ignore_errors=True)
    summary = {kind: summarize([{"run_ms": v} for v in values])["run_ms"] for kind, values in samples.items()}
    for kind, s in summary.items():
        print(
            f"{kind:<12} docker run p50 {s['p50']:.0f} ms  p95 {s['p95']:.0f} ms  "
            f"max {s['max']:.0f} ms  (n={s['n']})"
        )
    by_call = summarize(calls)
    print(
        "routed's daemon, per plugin call (p50 ms): "
        + ", ".join(f"{call} {s['p50']:.1f}" for call, s in by_call.items())
    )
    print(f"results: {save('docker', {'summary': summary, 'daemon_calls': by_call, 'samples_ms': samples})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
