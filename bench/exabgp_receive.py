"""The receive side of ExaBGP, per route, in each way issue 18 considered: what it costs
ExaBGP to hand routed an UPDATE and what it costs routed to decode it.

- json: ExaBGP decodes the UPDATE and encodes it as JSON (routed before issue 18);
- packets: ExaBGP decodes it and forwards its bytes as hex (`receive { packets; }`, b);
- packets-unparsed: the same without ExaBGP's decoding (bench.exabgp_unparsed);
- inprocess: ExaBGP in the receiving process, its objects converted directly (a);
- raw: what routed does now: a plain UPDATE is checked, not decoded, and forwarded as its
  bytes (bgp/exabgp/rawupdates.py, wire.py `is_plain`); routed decodes it in bulk.

The bulk lab's BIRD2 injector sends N /32s to an ExaBGP alone on rx (routed's launcher,
routed's ExaBGP settings, no Adj-RIB-In), whose API process only writes the lines to a
file. ExaBGP's CPU comes from /proc (until it has been idle for two seconds); the decoding
is then timed in this process over the captured lines: `messages.parse_line` for json and
raw, `json.loads` plus `wire.decode_update` for the packets.

    python -m bench.exabgp_receive --count 100000
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS,
    birdc,
    daemon_cpu_s,
    daemon_memory_kb,
    node_exec,
    pid_in_node,
    save,
    two_node_lab,
    wait_ready,
)
from bgp.exabgp.messages import parse_line
from bgp.exabgp.wire import decode_update
from bgp.model import RouteUpdate

ROOT = Path(__file__).resolve().parents[1]  # bench.exabgp_unparsed is not in the wheel
# packets-unparsed: ExaBGP skips decoding UPDATEs; inprocess: ExaBGP in the receiving process,
# its parsed objects converted directly (bench/exabgp_inprocess.py, prototype a)
# json: ExaBGP decodes every UPDATE into JSON (routed before issue 18); raw: routed today,
# plain UPDATEs passed on undecoded (bgp/exabgp/rawupdates.py).
MODES = ("json", "packets", "packets-unparsed", "inprocess", "raw")
CONFIG = """\
process sink {{
    run {python} {sink} {out};
    encoder json;
}}
neighbor 10.0.0.1 {{
    router-id 10.0.0.2;
    local-address 10.0.0.2;
    local-as 64512;
    peer-as 64512;
    hold-time 90;
    adj-rib-in false;
    family {{ ipv4 unicast; }}
    api {{ processes [ sink ]; receive {{ {mode}; update; }} }}
}}
"""
# the API process: ExaBGP's lines to a file (ExaBGP's config parser takes no quotes in `run`)
SINK = "import sys\nout = open(sys.argv[1], 'w', buffering=1)\nfor line in sys.stdin:\n    out.write(line)\n"
ENVIRONMENT = {
    "exabgp.daemon.user": "root",
    "exabgp.daemon.drop": "false",
    "exabgp.log.level": "WARNING",
    "exabgp.tcp.bind": "10.0.0.2",
    "exabgp.tcp.port": "179",
    "exabgp.api.encoder": "json",
    "exabgp.api.cli": "false",
    "exabgp.reactor.speed": "10.0",
    "exabgp.cache.attributes": "true",
}


def exabgp_cpu(netns: str) -> float:
    return sum(v for k, v in daemon_cpu_s(netns).items() if "exabgp" in k and "sink" not in k)


def receive(mode: str, count: int, work: Path) -> dict[str, Any]:
    """ExaBGP's CPU for `count` routes in this mode; the lines it handed over, in work/<mode>.jsonl.
    Its files live in the node's own /run (a node's /tmp is private to it)."""
    inside = "/run/exabgp-receive"
    receive = "packets" if mode.startswith("packets") else "parsed"  # raw: parsed, as routed asks
    conf = CONFIG.format(python=sys.executable, sink=f"{inside}/sink.py", out=f"{inside}/lines", mode=receive)
    launcher = {
        "packets-unparsed": f"bench.exabgp_unparsed server {inside}/exabgp.conf",
        "inprocess": f"bench.exabgp_inprocess {inside}/exabgp.conf {inside}/lines {count}",
    }.get(mode, f"bgp.exabgp.launch server {inside}/exabgp.conf")
    with two_node_lab("routed", count) as topo:
        wait_ready(topo, "routed")
        daemon = pid_in_node(topo, "rx", "routed run")
        if daemon is not None:  # routed out of the way (its ExaBGP dies with it)
            os.kill(daemon, signal.SIGKILL)
        while pid_in_node(topo, "rx", "bgp.exabgp.launch") is not None:
            time.sleep(0.1)
        node_exec(topo, "rx", "mkdir", "-p", inside)
        for name, text in (("sink.py", SINK), ("exabgp.conf", conf)):
            node_exec(topo, "rx", "sh", "-c", f"printf %s {shlex.quote(text)} > {inside}/{name}")
        raw = {"ROUTED_RAW_UPDATES": "1" if mode == "raw" else "0"}
        env = " ".join(f"{k}={v}" for k, v in (ENVIRONMENT | raw).items())
        node_exec(
            topo,
            "rx",
            "sh",
            "-c",
            f"cd {ROOT} && env {env} {sys.executable} -m {launcher} >{inside}/exabgp.log 2>&1 &",
        )
        netns = topo.node("rx").netns
        deadline = time.monotonic() + 60
        while "Established" not in birdc(topo, "inj", "show", "protocols", "all", "receiver"):
            if time.monotonic() > deadline:
                raise RuntimeError("the injector never established with ExaBGP")
            time.sleep(0.2)
        time.sleep(1)
        before = exabgp_cpu(netns)
        started = time.time()
        birdc(topo, "inj", "enable", "injected")
        last, last_change = before, time.time()
        while time.time() - last_change < 2:
            time.sleep(0.2)
            now = exabgp_cpu(netns)
            if now != last:
                last, last_change = now, time.time()
            if time.time() - started > 300:
                raise RuntimeError("ExaBGP still busy after 300 s")
        out = work / f"{mode}.jsonl"
        out.write_text(node_exec(topo, "rx", "cat", f"{inside}/lines"))
        return {
            "mode": mode,
            "n": count,
            "exabgp_cpu_s": round(last - before, 2),
            "lines": str(out),
            "exabgp_vmhwm_mb": round(
                sum(kb for name, kb in daemon_memory_kb(netns).items() if "exabgp" in name) / 1024, 1
            ),
        }


def decode_cost(mode: str, lines_file: Path) -> dict[str, Any]:
    lines = lines_file.read_text().splitlines()
    if mode == "inprocess":  # converted inside ExaBGP's process: its CPU has it already
        summary = lines[0].split() if lines else ["routes", "0"]
        return {"routed_decode_cpu_s": 0.0, "routes": int(summary[1]), "lines": 0}
    routes = 0
    started = time.process_time()
    for line in lines:
        if not mode.startswith("packets"):
            event = parse_line(line)
        else:
            message = json.loads(line)
            if message.get("type") != "update":
                continue
            neighbor = message["neighbor"]
            body = bytes.fromhex(neighbor["message"]["body"][2:])
            peer = ipaddress.ip_address(neighbor["address"]["peer"])
            event = decode_update(body, peer, int(neighbor["asn"]["peer"]))
        if isinstance(event, RouteUpdate):
            routes += len(event.announced)
    return {
        "routed_decode_cpu_s": round(time.process_time() - started, 3),
        "routes": routes,
        "lines": len(lines),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = parser.parse_args()
    work = RESULTS / "exabgp-receive"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    print(f"{'mode':<18}{'routes':>8}{'ExaBGP us/route':>17}{'routed us/route':>17}")
    for mode in args.modes:
        result = receive(mode, args.count, work)
        result |= decode_cost(mode, Path(result["lines"]))
        per = max(1, result["routes"])
        result["exabgp_us_per_route"] = round(result["exabgp_cpu_s"] / per * 1e6, 2)
        result["routed_us_per_route"] = round(result["routed_decode_cpu_s"] / per * 1e6, 2)
        results.append(result)
        print(
            f"{mode:<18}{result['routes']:>8}{result['exabgp_us_per_route']:>17}{result['routed_us_per_route']:>17}"
        )
    print(f"results: {save('exabgp_receive', {'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
