"""CNI ADD latency: routed-cni against the reference `bridge` plugin doing the same job.

Both run on h1 of labs/quickstart.clab.yml, invoked as a runtime invokes a plugin (an
executable, CNI_* in the environment, the network config on stdin), `--trials` times each,
interleaved: a new network namespace, ADD timed from the call to the result, then DEL.

- routed: the plugin as `routed cni install` writes it (routed.cni.relay under `python -IS`)
  hands the call to h1's daemon, which attaches the namespace (veth, /32 from h1's block, the
  route in the kernel before it answers); the daemon's stages come from its log.
- bridge: `bridge` with `host-local` IPAM (a Linux bridge, a veth, an address from a /24).

    python -m bench.cni --trials 30
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import textwrap
import time

from bench.common import LABS, save
from bench.convergence import summarize
from routed.cni.install import plugin_script
from routed.lab import runner
from routed.lab.state import state_dir
from routed.lab.topology import Topology, load_topology

TIMER = textwrap.dedent("""\
    import json, os, subprocess, sys, time
    trials, plugin_dir, routed_cni = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    confs = {
        "routed": {"cniVersion": "1.0.0", "name": "routed", "type": "routed"},
        "bridge": {"cniVersion": "1.0.0", "name": "br", "type": "bridge", "bridge": "cnibr0",
                   "isGateway": True,
                   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24"}]]}},
    }
    binaries = {"routed": routed_cni, "bridge": os.path.join(plugin_dir, "bridge")}
    out = {"routed": [], "bridge": [], "routed DEL": [], "bridge DEL": []}
    for i in range(trials):
        for kind in ("routed", "bridge"):
            ns = f"cb{kind[0]}{i}"
            subprocess.run(["ip", "netns", "add", ns], check=True)
            env = {"PATH": os.environ["PATH"], "CNI_CONTAINERID": f"bench{kind}{i}",
                   "CNI_NETNS": f"/run/netns/{ns}", "CNI_IFNAME": "eth0", "CNI_PATH": plugin_dir}
            stdin = json.dumps(confs[kind]).encode()
            started = time.monotonic()
            add = subprocess.run([binaries[kind]], input=stdin, env={**env, "CNI_COMMAND": "ADD"},
                                 capture_output=True)
            elapsed = (time.monotonic() - started) * 1000
            if add.returncode != 0:
                raise SystemExit(f"{kind} ADD failed: {add.stdout!r} {add.stderr!r}")
            out[kind].append(elapsed)
            started = time.monotonic()
            subprocess.run([binaries[kind]], input=stdin, env={**env, "CNI_COMMAND": "DEL"}, check=True)
            out[f"{kind} DEL"].append((time.monotonic() - started) * 1000)
            subprocess.run(["ip", "netns", "del", ns], check=True)
    print(json.dumps(out))
""")


def daemon_stages(topo: Topology) -> dict[str, list[dict[str, float]]]:
    """Each ADD's and DEL's stages as h1's daemon logged them (`workload_*_stages`, in ms)."""
    log = state_dir(topo) / "logs" / "h1.log"
    found: dict[str, list[dict[str, float]]] = {"ADD": [], "DEL": []}
    for line in log.read_text().splitlines():
        kind = (
            "ADD"
            if "event=workload_add_stages" in line
            else "DEL"
            if "event=workload_del_stages" in line
            else ""
        )
        if kind and "workload=cni-" in line:
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            skip = ("ts", "level", "logger", "event", "workload")
            found[kind].append({k: float(v) for k, v in fields.items() if k not in skip})
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args(argv)
    topo = load_topology(LABS / "quickstart.clab.yml", name=f"n{os.getpid()}", prefix="rt")
    runner.up(topo)
    try:
        time.sleep(2)
        # the plugin as `routed cni install` writes it (the relay, run with python -IS)
        routed_cni = f"/tmp/rt-bench-cni-{os.getpid()}"
        with open(routed_cni, "w") as handle:
            handle.write(plugin_script())
        os.chmod(routed_cni, 0o755)
        result = runner.run_in_node(
            topo,
            "h1",
            [sys.executable, "-c", TIMER, str(args.trials), "/usr/lib/cni", routed_cni],
            capture=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr or result.stdout)
        samples = json.loads(result.stdout.strip().splitlines()[-1])
        stages = daemon_stages(topo)
    finally:
        runner.down(topo)
        with contextlib.suppress(OSError):
            os.unlink(f"/tmp/rt-bench-cni-{os.getpid()}")
    summary = {kind: summarize([{"add_ms": v} for v in values])["add_ms"] for kind, values in samples.items()}
    for kind, s in summary.items():
        what = kind if " " in kind else f"{kind} ADD"
        print(f"{what:<11} p50 {s['p50']:.1f} ms  p95 {s['p95']:.1f} ms  max {s['max']:.1f} ms  (n={s['n']})")
    breakdown = {kind: summarize(found) for kind, found in stages.items() if found}
    for kind, by_stage in breakdown.items():
        print(
            f"routed's daemon, {kind} per stage (p50 ms): "
            + ", ".join(f"{k} {v['p50']:.1f}" for k, v in by_stage.items())
        )
        whole = summary["routed" if kind == "ADD" else "routed DEL"]["p50"]
        print(
            f"  the rest of routed's {kind} (plugin start, relay, the API round trip): "
            f"{whole - by_stage['total']['p50']:.1f} ms"
        )
    print(f"results: {save('cni', {'summary': summary, 'daemon_stages': breakdown, 'samples_ms': samples})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
