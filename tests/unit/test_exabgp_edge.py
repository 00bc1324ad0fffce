"""The ExaBGP edge without a process: its JSON parsed, our commands and config rendered."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_network

import pytest

from bgp.exabgp import commands
from bgp.exabgp.config import is_passive, render_config, render_environment
from bgp.exabgp.messages import MessageError, parse_line
from bgp.model import AsPathSegment, CommandAnswer, EndOfRib, Origin, PeerOpen, PeerState, RouteUpdate
from routed.bgpconfig import speaker_config
from routed.config import parse_config
from tests.support.nodes import node_yaml

HEAD = '{ "exabgp": "5.0.0", "time": 1.0, "host" : "vm", "pid" : 1, "ppid" : 1, "counter": 1, '
NEIGHBOR = '"neighbor": { "address": { "local": "10.0.0.2", "peer": "10.0.0.1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "10.0.0.2" '  # noqa: E501

# Lines as ExaBGP 5.0 printed them in a BIRD2 session (captured on this machine).
STATE_UP = HEAD + '"type": "state", ' + NEIGHBOR + ', "state": "up" } }'
OPEN = (
    HEAD
    + '"type": "open", '
    + NEIGHBOR
    + ', "direction": "receive", "open": { "version": 4, "asn": 64512, "hold_time": 240, "router_id": "10.0.0.1", "capabilities": {} } } }'
)
UPDATE = (
    HEAD
    + '"type": "update", '
    + NEIGHBOR
    + ', "direction": "receive", "message": { "update": { "attribute": { "origin": "igp", "as-path": {"0": {"element": "as-sequence", "value": [65099]}}, "med": 50, "local-preference": 100, "community": [ [ 65000, 7 ] ], "originator-id": "1.2.3.4", "cluster-list": [ "9.9.9.9" ] }, "announce": { "ipv4 unicast": { "10.0.0.1": [ { "nlri": "10.65.1.2/32" } ] } } } } } }'
)
WITHDRAW = (
    HEAD
    + '"type": "update", '
    + NEIGHBOR
    + ', "direction": "receive", "message": { "update": { "withdraw": { "ipv4 unicast": [ { "nlri": "10.65.1.2/32" }, { "nlri": "10.65.1.1/32" } ] } } } } }'
)
EOR = (
    HEAD
    + '"type": "update", '
    + NEIGHBOR
    + ', "direction": "receive", "message": { "eor": { "afi" : "ipv4", "safi" : "unicast" } } } }'
)


def test_state_and_open() -> None:
    assert parse_line(STATE_UP) == PeerState(ip_address("10.0.0.1"), 64512, "up")
    assert parse_line(OPEN) == PeerOpen(ip_address("10.0.0.1"), IPv4Address("10.0.0.1"))


def test_update_with_every_attribute() -> None:
    update = parse_line(UPDATE)
    assert isinstance(update, RouteUpdate)
    ((prefix, attrs),) = update.announced
    assert prefix == ip_network("10.65.1.2/32")
    assert attrs.next_hop == ip_address("10.0.0.1")
    assert attrs.origin is Origin.IGP
    assert attrs.as_path == (AsPathSegment("as-sequence", (65099,)),)
    assert (attrs.med, attrs.local_pref, attrs.communities) == (50, 100, ((65000, 7),))
    assert attrs.originator_id == IPv4Address("1.2.3.4")
    assert attrs.cluster_list == (IPv4Address("9.9.9.9"),)


def test_withdraw_and_eor() -> None:
    update = parse_line(WITHDRAW)
    assert isinstance(update, RouteUpdate)
    assert update.withdrawn == (ip_network("10.65.1.2/32"), ip_network("10.65.1.1/32"))
    assert parse_line(EOR) == EndOfRib(ip_address("10.0.0.1"), "ipv4 unicast")


def test_answers_and_ignored_lines() -> None:
    assert parse_line("done") == CommandAnswer(True, "done")
    assert parse_line("error") == CommandAnswer(False, "error")
    assert parse_line('{ "answer": "done", "message": "command completed" }') == CommandAnswer(
        True, "command completed"
    )
    assert parse_line("") is None
    assert parse_line(HEAD + '"type": "keepalive", ' + NEIGHBOR + "} }") is None
    # ExaBGP says so as it stops (seen when routed stops it): about no peer, not malformed
    assert parse_line(HEAD + '"type": "notification", "notification": "shutdown" }') is None


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": "update", "neighbor": 42}',
        '{"type": "state", "neighbor": {"address": {"peer": "banana"}, "asn": {"peer": 1}, "state": "up"}}',
        UPDATE.replace('"10.65.1.2/32"', '"10.65.1.2/33"'),
        UPDATE.replace('"origin": "igp"', '"origin": "sideways"'),
    ],
)
def test_malformed_lines_raise(line: str) -> None:
    with pytest.raises(MessageError):
        parse_line(line)


def test_commands_batch_prefixes() -> None:
    prefixes = [ip_network(f"10.65.{i // 256}.{i % 256}/32") for i in range(commands.NLRI_PER_COMMAND + 1)]
    lines = commands.announce(
        [ip_address("10.0.0.2")], prefixes, commands.Export(local_pref=200, communities=((64512, 1),))
    )
    assert len(lines) == 2
    assert lines[0].startswith(
        "neighbor 10.0.0.2 announce attributes next-hop self origin igp "
        "local-preference 200 community [ 64512:1 ] nlri 10.65.0.0/32 10.65.0.1/32"
    )
    assert commands.withdraw([ip_address("10.0.0.2")], prefixes[:2]) == [
        "neighbor 10.0.0.2 withdraw attributes next-hop 0.0.0.0 nlri 10.65.0.0/32 10.65.0.1/32"
    ]
    assert commands.announce([ip_address("10.0.0.2")], [], commands.Export()) == []
    two = [ip_address("10.0.0.2"), ip_address("10.0.0.3")]
    assert commands.withdraw(two, prefixes[:1]) == [
        "neighbor 10.0.0.2 , neighbor 10.0.0.3 withdraw attributes next-hop 0.0.0.0 nlri 10.65.0.0/32"
    ]
    # one command per family, each with its own unspecified next hop (a literal one is shared by
    # every neighbour in ExaBGP; `self` was deep-copied for each)
    mixed = iter([ip_network("fd00:65::1/128"), ip_network("10.65.0.9/32"), ip_network("fd00:65::/128")])
    assert commands.withdraw([ip_address("10.0.0.2")], mixed) == [
        "neighbor 10.0.0.2 withdraw attributes next-hop 0.0.0.0 nlri 10.65.0.9/32",
        "neighbor 10.0.0.2 withdraw attributes next-hop :: nlri fd00:65::/128 fd00:65::1/128",
    ]


def test_route_commands_name_runs_of_peers_as_ranges() -> None:
    """Three or more consecutive addresses are one `neighbor FIRST-LAST` (neighborranges), two
    are named each; End-of-RIBs and teardowns, which ExaBGP's own code reads, name every peer."""
    peers = [ip_address(a) for a in ("10.0.0.9", "10.0.0.5", "10.0.0.2", "10.0.0.4", "10.0.0.3", "10.0.0.7")]
    peers += [ip_address("fd00::a"), ip_address("fd00::8"), ip_address("fd00::9"), ip_address("10.0.0.8")]
    selector = "neighbor 10.0.0.2-10.0.0.5 , neighbor 10.0.0.7-10.0.0.9 , neighbor fd00::8-fd00::a announce attributes"
    assert commands.announce(peers, [ip_network("10.65.0.0/26")], commands.Export()) == [
        f"{selector} next-hop self origin igp nlri 10.65.0.0/26"
    ]
    assert commands.withdraw(peers[:3], [ip_network("10.65.0.0/26")]) == [
        "neighbor 10.0.0.2 , neighbor 10.0.0.5 , neighbor 10.0.0.9 withdraw attributes next-hop 0.0.0.0 "
        "nlri 10.65.0.0/26"
    ]
    assert commands.end_of_rib(peers[2:5], "ipv4 unicast") == (
        "neighbor 10.0.0.2 , neighbor 10.0.0.4 , neighbor 10.0.0.3 announce eor ipv4 unicast"
    )
    # a link-local address with its scope is named, not folded into a range of others
    scoped = [ip_address("fe80::1"), ip_address("fe80::2%eth1"), ip_address("fe80::3"), ip_address("fe80::2")]
    assert commands.withdraw(scoped, [ip_network("10.65.0.0/26")])[0].startswith(
        "neighbor fe80::1-fe80::3 , neighbor fe80::2%eth1 withdraw"
    )

    # an address of another class than ipaddress's own is named, never dropped
    class Odd(IPv4Address):
        pass

    odd = [ip_address("10.0.0.2"), ip_address("10.0.0.3"), ip_address("10.0.0.4"), Odd("10.0.0.9")]
    assert commands.withdraw(odd, [ip_network("10.65.0.0/26")])[0].startswith(
        "neighbor 10.0.0.2-10.0.0.4 , neighbor 10.0.0.9 withdraw"
    )
    # an ExaBGP the launcher does not patch reads no range: every peer named
    assert commands.withdraw(peers[2:5], [ip_network("10.65.0.0/26")], ranges=False) == [
        "neighbor 10.0.0.2 , neighbor 10.0.0.4 , neighbor 10.0.0.3 withdraw attributes next-hop 0.0.0.0 "
        "nlri 10.65.0.0/26"
    ]


def test_ranges_are_written_only_for_an_exabgp_the_launcher_patches(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import exabgp.version  # type: ignore[import-untyped]

    from bgp.exabgp import patched

    assert patched.installed_is_patched()  # the ExaBGP this project installs
    monkeypatch.setattr(exabgp.version, "version", "5.1.0")
    assert not patched.installed_is_patched()
    monkeypatch.setattr(exabgp.version, "version", "5.0.15")
    assert patched.installed_is_patched()
    monkeypatch.setitem(sys.modules, "exabgp.version", None)  # no ExaBGP to be found
    assert not patched.installed_is_patched()


def test_the_launcher_loads_no_package_metadata() -> None:
    """importlib.metadata (email, zipfile, pathlib) was 1.4 MB of the running ExaBGP for a
    version string that ExaBGP itself has: the idle host's budget (issue 30, item 5)."""
    import subprocess
    import sys

    probe = "import sys; from bgp.exabgp import launch; print('importlib.metadata' in sys.modules)"
    done = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_reflection_attributes_text() -> None:
    export = commands.Export(
        next_hop=ip_address("10.0.0.12"),
        as_path=(65001,),
        med=5,
        originator_id=IPv4Address("10.0.0.12"),
        cluster_list=(IPv4Address("10.0.0.254"),),
    )
    assert commands.export_text(export) == (
        "next-hop 10.0.0.12 origin igp as-path [ 65001 ] med 5 "
        "originator-id 10.0.0.12 cluster-list [ 10.0.0.254 ]"
    )


CONFIG = node_yaml(
    "mesh: full",
    "mesh_nodes: [10.0.0.11, 10.0.0.12, 10.0.0.5]",
    "peers:",
    """  - {address: 10.1.1.0, kind: ebgp, asn: 65001, password: 's3"cret', hold_time: 9, graceful_restart: false}""",
)


def test_render_config() -> None:
    cfg = speaker_config(parse_config(CONFIG, "h1.yaml"))
    text = render_config(cfg, "/usr/bin/setpriv --pdeathsig KILL -- /usr/bin/sleep infinity")
    assert "    run /usr/bin/setpriv --pdeathsig KILL -- /usr/bin/sleep infinity;" in text
    assert "neighbor 10.1.1.0 {" in text and "peer-as 65001;" in text and "hold-time 9;" in text
    assert "md5-password czMiY3JldA==;" in text and "md5-base64 true;" in text  # s3"cret
    assert (
        "neighbor 10.0.0.12 {" in text
        and "neighbor 10.0.0.5 {" in text
        and "neighbor 10.0.0.11 {" not in text
    )
    ebgp = text.split("neighbor 10.1.1.0 {")[1].split("\n}")[0]
    assert "graceful-restart" not in ebgp
    mesh = text.split("neighbor 10.0.0.12 {")[1].split("\n}")[0]
    assert "graceful-restart 120;" in mesh and "ipv4 unicast;" in mesh and "ipv6 unicast;" in mesh
    assert (
        "manual-eor true;" in mesh and "manual-eor true;" in ebgp
    )  # our End-of-RIB, when our table is whole
    env = render_environment(cfg)
    assert env["exabgp.tcp.bind"] == "10.0.0.11" and env["exabgp.api.cli"] == "false"


def test_one_side_opens_each_session() -> None:
    cfg = speaker_config(parse_config(CONFIG, "h1.yaml"))
    peers = {str(p.address): p for p in cfg.neighbors}
    assert not is_passive(cfg, peers["10.0.0.12"])  # we have the lower address: we connect
    assert is_passive(cfg, peers["10.0.0.5"])
    assert not is_passive(cfg, peers["10.1.1.0"])


def test_exabgp_dies_with_routed_even_when_routed_is_pid_1() -> None:
    """The child checks its parent is the routed that started it, not that it is not pid 1:
    in a container routed may be pid 1 (the image's first build exited ExaBGP at once)."""
    import os
    import subprocess

    from bgp.exabgp.process import _die_with

    assert subprocess.run(["true"], preexec_fn=_die_with(os.getpid())).returncode == 0
    # a parent that is not ours: as if routed had died before prctl took effect
    assert subprocess.run(["true"], preexec_fn=_die_with(os.getpid() + 1)).returncode == 1
