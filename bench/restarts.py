"""Packets lost per restart event: routed, BIRD2 and FRR doing the same job in the same lab shape.

The shape is labs/quickstart.clab.yml: one route reflector and three hosts on one L2
fabric, two containers per host. routed runs that file as shipped; BIRD2 and FRR run
a generated copy of it where every node runs that daemon instead (BIRD2 set up as
Calico sets it up: graceful restart on, kernel routes persist; FRR with
`bgp graceful-restart` and `preserve-fw-state`). Three ping streams at 20 packets/s
between containers on different hosts (h2->h1, h3->h1, h1->h3) run through each event,
and every packet is counted from ping's own summary.

Events (the restart happens `--down` seconds after the stop, as a supervisor would):
  host-term     h1's daemon stopped the way a service manager stops it (SIGTERM), started again
  host-gr       BIRD2 only: `birdc graceful restart`, then `bird -R` (BIRD's planned restart)
  host-kill     h1's daemon SIGKILLed (a crash), started again as the service manager would
  exabgp-kill   routed only: h1's ExaBGP child SIGKILLed; routed restarts it
  rr-kill       the only reflector's daemon SIGKILLed, started again

    python -m bench.restarts                       # everything, 20 s per event
    python -m bench.restarts --daemons routed --events host-kill --seconds 8
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import LABS, birdc, generated_lab, node_exec, pid_in_node, save
from routed.lab import runner
from routed.lab.topology import Topology, load_topology

DAEMONS = ("routed", "bird", "frr")
EVENTS = ("host-term", "host-gr", "host-kill", "exabgp-kill", "rr-kill")
APPLIES = {
    "routed": ("host-term", "host-kill", "exabgp-kill", "rr-kill"),
    "bird": ("host-term", "host-gr", "host-kill", "rr-kill"),
    "frr": ("host-term", "host-kill", "rr-kill"),
}
HOSTS = {"h1": "10.0.0.11", "h2": "10.0.0.12", "h3": "10.0.0.13"}
WORKLOADS = {
    "h1": {"web1": "10.65.1.1", "web2": "10.65.1.2"},
    "h2": {"web1": "10.65.2.1", "web2": "10.65.2.2"},
    "h3": {"web1": "10.65.3.1", "web2": "10.65.3.2"},
}
STREAMS = (("h2", "web1", "10.65.1.1"), ("h3", "web1", "10.65.1.2"), ("h1", "web1", "10.65.3.1"))
RATE = 20
SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")
# how each daemon is started again, as its service manager would (the lab entrypoint's line)
START = {
    "bird": ["bird", "-c", "/etc/bird/bird.conf", "-s", "/run/bird/bird.ctl"],
    "frr": ["/usr/lib/frr/bgpd", "-d", "-u", "frr", "-g", "frr", "-f", "/etc/frr/frr.conf"],
}
PROCESS = {"routed": "routed run", "bird": "bird ", "frr": "/usr/lib/frr/bgpd"}


def container_commands(node: str, address: str) -> list[str]:
    """A container made by hand as a runtime would: its /32 on a veth, the host routing it."""
    commands = ["sysctl -qw net.ipv4.ip_forward=1"]
    for netns, ip in WORKLOADS.get(node, {}).items():
        commands += [
            f"ip netns add {netns}",
            f"ip link add w{netns} type veth peer name eth0 netns {netns}",
            f"ip link set w{netns} up",
            f"ip -n {netns} addr add {ip}/32 dev eth0",
            f"ip -n {netns} link set eth0 up",
            f"ip -n {netns} route add {address}/32 dev eth0",
            f"ip -n {netns} route add default via {address}",
            f"ip route add {ip}/32 dev w{netns}",
        ]
    return commands


def bird_config(node: str, address: str) -> str:
    if node == "rr1":
        sessions = "".join(
            f"""
            protocol bgp {host} from hosts {{ neighbor {ip} as 64512; }}"""
            for host, ip in HOSTS.items()
        )
        return textwrap.dedent(f"""\
            router id {address};
            protocol device {{}}
            protocol direct {{ ipv4; interface "eth*"; }}
            template bgp hosts {{
                local {address} as 64512;
                rr client; rr cluster id {address};
                hold time 9; connect retry time 1;
                graceful restart on; graceful restart time 120;
                ipv4 {{ import all; export all; }};
            }}""") + textwrap.dedent(sessions)
    statics = "".join(f'    route {ip}/32 via "w{ns}";\n' for ns, ip in WORKLOADS[node].items())
    return (
        textwrap.dedent(f"""\
        router id {address};
        protocol device {{}}
        protocol direct {{ ipv4; interface "eth*"; }}
        protocol static containers {{
            ipv4;
        """)
        + statics
        + textwrap.dedent(f"""\
        }}
        protocol kernel {{
            ipv4 {{ import none; export where source = RTS_BGP; }};
            persist; graceful restart on;
        }}
        protocol bgp rr1 {{
            local {address} as 64512; neighbor 10.0.0.1 as 64512;
            hold time 9; connect retry time 1;
            graceful restart on; graceful restart time 120;
            ipv4 {{ import all; export where proto = "containers"; next hop self; }};
        }}
        """)
    )


def frr_config(node: str, address: str) -> str:
    lines = [
        "frr defaults traditional",
        f"hostname {node}",
        "router bgp 64512",
        f" bgp router-id {address}",
        " bgp graceful-restart",
        " bgp graceful-restart preserve-fw-state",
        " no bgp ebgp-requires-policy",
        " no bgp network import-check",
    ]
    neighbors = list(HOSTS.values()) if node == "rr1" else ["10.0.0.1"]
    for ip in neighbors:
        lines += [
            f" neighbor {ip} remote-as 64512",
            f" neighbor {ip} timers 3 9",
            f" neighbor {ip} timers connect 1",
        ]
    lines.append(" address-family ipv4 unicast")
    for ip in WORKLOADS.get(node, {}).values():
        lines.append(f"  network {ip}/32")
    for ip in neighbors:
        lines.append(f"  neighbor {ip} activate")
        lines.append(f"  neighbor {ip} {'route-reflector-client' if node == 'rr1' else 'next-hop-self'}")
    lines.append(" exit-address-family")
    return "\n".join(lines) + "\n"


def quickstart_like(daemon: str) -> tuple[str, dict[str, str]]:
    """The quickstart topology with every node running `daemon` and containers made by hand."""
    suffix, target = ("conf", "/etc/bird/bird.conf") if daemon == "bird" else ("conf", "/etc/frr/frr.conf")
    render = bird_config if daemon == "bird" else frr_config
    nodes = {"rr1": "10.0.0.1", **HOSTS}
    files = {f"{n}.{suffix}": render(n, a) for n, a in nodes.items()}
    text = textwrap.dedent("""\
        name: restarts
        topology:
          nodes:
            sw:
              kind: linux
              env: {NODE_DAEMON: none}
              exec: [ip link add br0 type bridge, ip link set br0 up, ip link set eth1 master br0,
                     ip link set eth2 master br0, ip link set eth3 master br0, ip link set eth4 master br0]
        """)
    for node, address in nodes.items():
        commands = [f"ip addr add {address}/24 dev eth1", *container_commands(node, address)]
        text += textwrap.indent(
            textwrap.dedent(f"""\
            {node}:
              kind: linux
              binds: ["{node}.{suffix}:{target}:ro"]
              env: {{NODE_DAEMON: {daemon}}}
              exec: {commands!r}
            """),
            "    ",
        )
    text += "  links:\n" + "".join(
        f'    - endpoints: ["sw:eth{i}", "{n}:eth1"]\n' for i, n in enumerate(nodes, 1)
    )
    return text, files


@contextmanager
def lab(daemon: str) -> Iterator[Topology]:
    if daemon == "routed":
        topo = load_topology(LABS / "quickstart.clab.yml", name=f"r{os.getpid()}", prefix="rt")
        runner.up(topo)
        try:
            yield topo
        finally:
            runner.down(topo)
        return
    text, files = quickstart_like(daemon)
    with generated_lab(text, files) as topo:
        yield topo


def ping_ok(topo: Topology, node: str, netns: str, dst: str) -> bool:
    result = runner.run_in_node(
        topo, node, ["ip", "netns", "exec", netns, "ping", "-c1", "-W1", dst], capture=True
    )
    return result.returncode == 0


def wait_converged(topo: Topology, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    pending = list(STREAMS)
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not converged within {timeout}s: {pending} do not ping")
        pending = [s for s in pending if not ping_ok(topo, *s)]
        time.sleep(0.2)


def pid_of(topo: Topology, node: str, needle: str) -> int:
    pid = pid_in_node(topo, node, needle)
    if pid is None:
        raise RuntimeError(f"no {needle!r} process in {node}")
    return pid


def kill(pid: int, sig: signal.Signals, timeout: float = 20) -> None:
    os.kill(pid, sig)
    wait_gone(pid, timeout)


def wait_gone(pid: int, timeout: float) -> None:
    """Until the process has exited (gone, or a zombie its parent has not reaped yet)."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
                return
        except OSError:
            return
        time.sleep(0.05)


def start_again(topo: Topology, daemon: str, node: str, graceful: bool = False) -> None:
    if daemon == "routed":
        runner.start(topo, node)
        return
    argv = START[daemon] + (["-R"] if graceful else [])
    node_exec(topo, node, *argv)


def trigger(topo: Topology, daemon: str, event: str, down: float) -> None:
    node = "rr1" if event == "rr-kill" else "h1"
    if event == "exabgp-kill":
        kill(pid_of(topo, "h1", "bgp.exabgp.launch"), signal.SIGKILL)
        return
    if event == "host-gr":
        birdc(topo, "h1", "graceful", "restart")
        while processes_named(topo, node, PROCESS[daemon]):
            time.sleep(0.05)
    else:
        sig = signal.SIGTERM if event == "host-term" else signal.SIGKILL
        kill(pid_of(topo, node, PROCESS[daemon]), sig)
    time.sleep(down)
    start_again(topo, daemon, node, graceful=event == "host-gr")


def processes_named(topo: Topology, node: str, needle: str) -> bool:
    return pid_in_node(topo, node, needle) is not None


def run_event(topo: Topology, daemon: str, event: str, seconds: float, down: float) -> dict[str, Any]:
    count = int(seconds * RATE)
    outputs: dict[str, str] = {}

    def stream(node: str, netns: str, dst: str) -> None:
        argv = [
            "ip",
            "netns",
            "exec",
            netns,
            "ping",
            "-q",
            "-i",
            str(1 / RATE),
            "-c",
            str(count),
            "-W",
            "1",
            dst,
        ]
        outputs[f"{node}/{netns}->{dst}"] = runner.run_in_node(topo, node, argv, capture=True).stdout

    threads = [threading.Thread(target=stream, args=s) for s in STREAMS]
    for thread in threads:
        thread.start()
    time.sleep(3)
    trigger(topo, daemon, event, down)
    for thread in threads:
        thread.join()
    lost = {}
    for label, output in outputs.items():
        match = SUMMARY.search(output)
        if not match:
            raise RuntimeError(f"{label}: no ping summary: {output!r}")
        lost[label] = int(match.group(1)) - int(match.group(2))
    return {
        "daemon": daemon,
        "event": event,
        "sent": count * len(STREAMS),
        "lost": sum(lost.values()),
        "streams": lost,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--daemons", nargs="+", default=list(DAEMONS), choices=DAEMONS)
    parser.add_argument("--events", nargs="+", default=list(EVENTS), choices=EVENTS)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each ping stream")
    parser.add_argument("--down", type=float, default=2.0, help="seconds between stop and start")
    args = parser.parse_args(argv)
    results = []
    for daemon in args.daemons:
        events = [e for e in args.events if e in APPLIES[daemon]]
        if not events:
            continue
        with lab(daemon) as topo:
            for event in events:
                wait_converged(topo)
                time.sleep(3)  # let End-of-RIBs and sweeps of the previous event finish
                result = run_event(topo, daemon, event, args.seconds, args.down)
                print(f"{daemon:<7} {event:<12} lost {result['lost']:>4} of {result['sent']}", flush=True)
                results.append(result)
    path = save("restarts", {"seconds": args.seconds, "rate": RATE, "down": args.down, "results": results})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
