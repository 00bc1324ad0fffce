"""Docker's network and IPAM plugin protocols, every call, with no Docker: the pure protocol,
the plugin driven through Docker's call sequence (a fake stands in for the kernel's side of
the workloads), and the front's HTTP answers (404, 500 with Err, routed not running)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from routed.config import parse_config
from routed.dataplane.workload import WorkloadSpec
from routed.docker import front, plugin, portmap, protocol
from routed.docker.plugin import DockerPlugin
from routed.docker.protocol import PluginError
from routed.ipam.backends import make_ipam
from routed.workloads.manager import NotFound
from tests.support.nodes import node_yaml

POOLS = (ip_network("10.65.0.0/16"), ip_network("fd00:65::/48"))
NODE = node_yaml(
    "state_dir: STATE",
    "ipam: {mode: static, block_size: 29, blocks: [10.65.1.0/29, 'fd00:65::/122']}",
    "docker: {enabled: true, portmap_plugin: [PORTMAP], stale_after: 60}",
    pools="10.65.0.0/16, fd00:65::/48",
)


# --- the pure protocol ------------------------------------------------------------------


def test_pool_without_subnet_is_every_pool_of_its_version() -> None:
    pool = protocol.request_pool(POOLS, {"AddressSpace": "routed", "Pool": "", "V6": False})
    # 0.0.0.0/0: libnetwork would re-ask forever for a pool that overlaps the host's routes
    assert protocol.pool_response(pool) == {
        "PoolID": "routed:v4",
        "Pool": "0.0.0.0/0",
        "Data": {"com.docker.network.gateway": "0.0.0.0/0"},
    }
    assert pool.within == (POOLS[0],)
    v6 = protocol.request_pool(POOLS, {"Pool": "", "V6": True})
    assert (v6.id, str(v6.network), v6.within) == ("routed:v6", "::/0", (POOLS[1],))
    # the id describes the pool: the same answer after a restart, nothing to count
    assert protocol.pool_from_id(POOLS, "routed:v4") == pool


def test_pool_with_subnet_and_ip_range() -> None:
    pool = protocol.request_pool(POOLS, {"Pool": "10.65.1.0/24", "SubPool": "10.65.1.0/28"})
    assert (pool.id, str(pool.network), pool.within) == (
        "routed:10.65.1.0/24,10.65.1.0/28",
        "10.65.1.0/24",
        (ip_network("10.65.1.0/28"),),
    )
    assert protocol.pool_from_id(POOLS, pool.id) == pool
    assert protocol.request_pool(POOLS, {"Pool": "10.65.0.0/16"}).within == (POOLS[0],)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            {"Pool": "192.168.7.0/24"},
            "outside routed's pools .10.65.0.0/16, fd00:65::/48.; use a --subnet inside",
        ),
        (
            {"Pool": "10.65.1.0/24", "SubPool": "10.65.2.0/28"},
            "--ip-range 10.65.2.0/28 is not inside --subnet",
        ),
        ({"Pool": "", "SubPool": "10.65.2.0/28"}, "--ip-range needs --subnet"),
        ({"Pool": "10.65.1.1/24"}, "is not a subnet in CIDR form"),
        ({"Pool": "", "Options": {"x": "y"}}, "takes no --ipam-opt"),
    ],
)
def test_pool_refusals_say_what_to_do(request_: dict[str, Any], message: str) -> None:
    with pytest.raises(PluginError, match=message):
        protocol.request_pool(POOLS, request_)


def test_no_ipv6_pool() -> None:
    with pytest.raises(PluginError, match=r"no IPv6 pool.*without --ipv6"):
        protocol.request_pool(POOLS[:1], {"V6": True})


def test_addresses_gateway_and_network_checks() -> None:
    pool = protocol.request_pool(POOLS, {"Pool": "10.65.1.0/24"})
    assert protocol.requested_address(pool, {"Address": ""}) is None
    assert protocol.requested_address(pool, {"Address": "10.65.1.9"}) == ip_address("10.65.1.9")
    with pytest.raises(PluginError, match="outside the network's addresses"):
        protocol.requested_address(pool, {"Address": "10.65.2.9"})
    gateway = {"Address": "10.65.1.1", "Options": {"RequestAddressType": "com.docker.network.gateway"}}
    with pytest.raises(PluginError, match=r"no gateway address.*without --gateway"):
        protocol.requested_address(pool, gateway)
    assert protocol.address_response(ip_address("10.65.1.3")) == {"Address": "10.65.1.3/32", "Data": {}}
    assert protocol.address_response(ip_address("fd00:65::3"))["Address"] == "fd00:65::3/128"

    ours = {"IPv4Data": [{"Pool": "0.0.0.0/0", "Gateway": "0.0.0.0/0"}], "Options": {}}
    protocol.check_network(ours)
    protocol.check_network({**ours, "Options": {"com.docker.network.enable_ipv6": True}})
    with pytest.raises(PluginError, match="add --ipam-driver routed"):
        protocol.check_network({"IPv4Data": [{"Pool": "172.18.0.0/16", "Gateway": "172.18.0.1/16"}]})
    with pytest.raises(PluginError, match="takes no -o mtu"):
        protocol.check_network({**ours, "Options": {"com.docker.network.generic": {"mtu": "9000"}}})
    with pytest.raises(PluginError, match=r"takes no com\.docker\.network\.internal"):
        protocol.check_network({**ours, "Options": {"com.docker.network.internal": True}})


def test_join_answer_names_the_interface_and_the_link_local_gateways() -> None:
    answer = protocol.join_response("rpabc", [ip_address("10.65.1.3"), ip_address("fd00:65::3")])
    assert answer == {
        "InterfaceName": {"SrcName": "rpabc", "DstPrefix": "eth"},
        "Gateway": "169.254.1.1",
        "GatewayIPv6": "fe80::1",
        "StaticRoutes": [
            {"Destination": "169.254.1.1/32", "RouteType": 1},
            {"Destination": "fe80::1/128", "RouteType": 1},
        ],
    }


def test_port_mappings() -> None:
    options = {
        "com.docker.network.portmap": [
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
            {"Proto": 17, "IP": "", "Port": 53, "HostIP": "10.0.0.11", "HostPort": 5353, "HostPortEnd": 5354},
        ]
    }
    assert portmap.mappings(options) == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "10.0.0.11"},
        {"hostPort": 5354, "containerPort": 54, "protocol": "udp", "hostIP": "10.0.0.11"},
    ]
    with pytest.raises(PluginError, match="explicit host port"):
        portmap.mappings({"com.docker.network.portmap": [{"Proto": 6, "Port": 80, "HostPort": 0}]})
    assert portmap.mappings({}) == []


@pytest.mark.parametrize(
    ("binding", "needle"),
    [
        # issue 25, finding 10: 2,000,000 mappings were built in a second; negative ports accepted
        ({"Proto": 6, "Port": 1, "HostPort": 1, "HostPortEnd": 2_000_000}, "not a port number"),
        ({"Proto": 6, "Port": -80, "HostPort": 8080}, "not a port number"),
        ({"Proto": 6, "Port": 80, "HostPort": -8080}, "not a port number"),
        ({"Proto": 6, "Port": 80, "HostPort": 70000}, "not a port number"),
        ({"Proto": 6, "Port": 80, "HostPort": 9000, "HostPortEnd": 8000}, "not a range"),
        ({"Proto": 6, "Port": 65000, "HostPort": 1000, "HostPortEnd": 2000}, "not a range"),
        ({"Proto": 6, "Port": "eighty", "HostPort": 8080}, "not a port number"),
        ({"Proto": "tcp", "Port": 80, "HostPort": 8080}, "protocol"),
        ("8080:80", "not an object"),
    ],
)
def test_port_mappings_out_of_bounds_are_refused(binding: object, needle: str) -> None:
    with pytest.raises(PluginError, match=needle):
        portmap.mappings({"com.docker.network.portmap": [binding]})


def test_published_ports_are_bounded_in_all() -> None:
    whole = {"Proto": 6, "Port": 1, "HostPort": 1, "HostPortEnd": 65535}
    assert len(portmap.mappings({"com.docker.network.portmap": [whole]})) == 65535
    with pytest.raises(PluginError, match="more than 65535"):
        portmap.mappings({"com.docker.network.portmap": [whole, {**whole, "Proto": 17}]})


# --- the plugin, through Docker's call sequence ----------------------------------------------


class FakeWorkloads:
    """The WorkloadManager's face to the plugin, with no kernel behind it."""

    def __init__(self) -> None:
        self.specs: dict[str, WorkloadSpec] = {}
        self.exclusive = asyncio.Lock()
        self.attached: dict[str, Any] = {}

    async def add(
        self, workload_id: str, netns: str, ips: Any, runtime: str = "", stages: Any = None
    ) -> WorkloadSpec:
        spec = WorkloadSpec(workload_id, netns, tuple(ips), "eth0", runtime)
        self.specs[workload_id] = spec
        return spec

    async def delete(self, workload_id: str, stages: Any = None) -> WorkloadSpec:
        if workload_id not in self.specs:
            raise NotFound(workload_id)
        return self.specs.pop(workload_id)

    def current(self) -> list[WorkloadSpec]:
        return list(self.specs.values())

    async def stored(self) -> list[WorkloadSpec]:
        return list(self.specs.values())

    def addresses_in_use(self) -> set[Any]:
        return {ip for w in self.specs.values() for ip in w.ips} | self.reserved()

    reserved: Any = set


FAKE_PORTMAP = """#!/bin/sh
{ echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS"; cat; echo; } >> "$(dirname "$0")/calls"
"""


@pytest.fixture
def made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[DockerPlugin, FakeWorkloads, Path]:
    fake = tmp_path / "portmap"
    fake.write_text(FAKE_PORTMAP)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    text = NODE.replace("STATE", str(tmp_path / "state")).replace("PORTMAP", str(fake))
    cfg = parse_config(text, "h1.yaml")
    workloads = FakeWorkloads()
    synced: list[int] = []

    async def in_sync() -> None:
        synced.append(1)

    made = DockerPlugin(cfg, workloads, make_ipam(cfg), in_sync)  # type: ignore[arg-type]
    workloads.reserved = made.reserved  # as the daemon wires it

    async def settled(spec: WorkloadSpec, sandbox: str, timeout: float = 10.0) -> bool:
        return True

    monkeypatch.setattr(plugin, "settle_handed_off", settled)
    return made, workloads, tmp_path


async def call(made: DockerPlugin, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return await made.handlers[name](body or {})


async def test_every_call_of_a_container_lifecycle(made: tuple[DockerPlugin, FakeWorkloads, Path]) -> None:
    docker, workloads, tmp = made
    assert await call(docker, "Plugin.Activate") == {"Implements": ["NetworkDriver", "IpamDriver"]}
    assert await call(docker, "NetworkDriver.GetCapabilities") == {"Scope": "local"}
    assert await call(docker, "IpamDriver.GetCapabilities") == {
        "RequiresMACAddress": False,
        "RequiresRequestReplay": False,
    }
    assert await call(docker, "IpamDriver.GetDefaultAddressSpaces") == {
        "LocalDefaultAddressSpace": "routed",
        "GlobalDefaultAddressSpace": "routed",
    }
    pool = await call(docker, "IpamDriver.RequestPool", {"AddressSpace": "routed", "Pool": "", "V6": False})
    pool6 = await call(docker, "IpamDriver.RequestPool", {"AddressSpace": "routed", "Pool": "", "V6": True})
    assert (
        await call(
            docker,
            "NetworkDriver.CreateNetwork",
            {
                "NetworkID": "n1",
                "Options": {"com.docker.network.enable_ipv6": True},
                "IPv4Data": [{"Pool": pool["Pool"], "Gateway": pool["Data"]["com.docker.network.gateway"]}],
                "IPv6Data": [{"Pool": pool6["Pool"], "Gateway": pool6["Data"]["com.docker.network.gateway"]}],
            },
        )
        == {}
    )
    # the container: an address of this node's block per version, then its endpoint
    v4 = await call(docker, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"], "Address": ""})
    v6 = await call(docker, "IpamDriver.RequestAddress", {"PoolID": pool6["PoolID"], "Address": ""})
    assert (v4["Address"], v6["Address"]) == ("10.65.1.1/32", "fd00:65::1/128")
    endpoint = "e" * 64
    created = await call(
        docker,
        "NetworkDriver.CreateEndpoint",
        {
            "NetworkID": "n1",
            "EndpointID": endpoint,
            "Interface": {"Address": v4["Address"], "AddressIPv6": v6["Address"]},
        },
    )
    assert created == {}
    spec = workloads.specs["docker-eeeeeeeeeeee"]
    assert (spec.ips, spec.runtime) == ((ip_address("10.65.1.1"), ip_address("fd00:65::1")), "docker")
    info = await call(docker, "NetworkDriver.EndpointOperInfo", {"NetworkID": "n1", "EndpointID": endpoint})
    assert info["Value"]["addresses"] == ["10.65.1.1", "fd00:65::1"]
    joined = await call(
        docker,
        "NetworkDriver.Join",
        {"NetworkID": "n1", "EndpointID": endpoint, "SandboxKey": "/run/docker/netns/x"},
    )
    assert joined["InterfaceName"] == {"SrcName": spec.peer_ifname, "DstPrefix": "eth"}
    assert joined["Gateway"] == "169.254.1.1"
    # -p 8080:80 through the CNI portmap plugin; its DEL gets the same mappings back
    ports = {"com.docker.network.portmap": [{"Proto": 6, "Port": 80, "HostPort": 8080, "HostPortEnd": 8080}]}
    program = {"NetworkID": "n1", "EndpointID": endpoint, "Options": ports}
    assert await call(docker, "NetworkDriver.ProgramExternalConnectivity", program) == {}
    # routed restarts between publishing and revoking: the mappings are read back from disk
    docker = DockerPlugin(docker.cfg, workloads, docker.ipam, docker._in_sync)  # type: ignore[arg-type]
    workloads.reserved = docker.reserved
    assert (
        await call(
            docker, "NetworkDriver.RevokeExternalConnectivity", {"NetworkID": "n1", "EndpointID": endpoint}
        )
        == {}
    )
    calls = (tmp / "calls").read_text().splitlines()
    assert calls[0] == f"ADD {endpoint} /run/docker/netns/x"
    added = json.loads(calls[1])
    assert added["runtimeConfig"]["portMappings"] == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
    ]
    assert added["prevResult"]["ips"][0]["address"] == "10.65.1.1/32"
    assert calls[2].startswith(f"DEL {endpoint}")
    assert json.loads(calls[3])["runtimeConfig"] == added["runtimeConfig"]
    assert await call(docker, "NetworkDriver.Leave", {"NetworkID": "n1", "EndpointID": endpoint}) == {}
    assert (
        await call(docker, "NetworkDriver.DeleteEndpoint", {"NetworkID": "n1", "EndpointID": endpoint}) == {}
    )
    assert workloads.specs == {}
    # repeated: no harm
    assert (
        await call(docker, "NetworkDriver.DeleteEndpoint", {"NetworkID": "n1", "EndpointID": endpoint}) == {}
    )
    for address, pool_id in ((v4, pool), (v6, pool6)):
        release = {"PoolID": pool_id["PoolID"], "Address": address["Address"].split("/")[0]}
        assert await call(docker, "IpamDriver.ReleaseAddress", release) == {}
        assert await call(docker, "IpamDriver.ReleaseAddress", release) == {}
    assert docker.reserved() == set()
    assert await call(docker, "IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]}) == {}
    assert await call(docker, "NetworkDriver.DeleteNetwork", {"NetworkID": "n1"}) == {}
    discovery = {"DiscoveryType": 1, "DiscoveryData": {"Address": "10.0.0.11", "self": True}}
    assert await call(docker, "NetworkDriver.DiscoverNew", discovery) == {}
    assert await call(docker, "NetworkDriver.DiscoverDelete", discovery) == {}


async def test_reservations_survive_a_restart_and_blocks_run_out(
    made: tuple[DockerPlugin, FakeWorkloads, Path],
) -> None:
    docker, workloads, _ = made
    pool = await call(docker, "IpamDriver.RequestPool", {"Pool": "10.65.1.0/29"})
    got = [
        (await call(docker, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"]}))["Address"]
        for _ in range(3)
    ]
    assert got == ["10.65.1.1/32", "10.65.1.2/32", "10.65.1.3/32"]
    # a restarted daemon reads what it gave away: never the same address twice
    again = DockerPlugin(docker.cfg, workloads, docker.ipam, docker._in_sync)  # type: ignore[arg-type]
    workloads.reserved = again.reserved
    more = [
        (await call(again, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"]}))["Address"]
        for _ in range(4)
    ]
    assert more == ["10.65.1.4/32", "10.65.1.5/32", "10.65.1.6/32", "10.65.1.7/32"]
    with pytest.raises(PluginError, match=r"every IPv4 block of this node is full inside 10.65.1.0/29"):
        await call(again, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"]})
    # --ip of an address given already
    with pytest.raises(PluginError, match="already in use"):
        await call(again, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"], "Address": "10.65.1.2"})
    with pytest.raises(PluginError, match="was not given by routed's IPAM"):
        await call(
            again,
            "NetworkDriver.CreateEndpoint",
            {"EndpointID": "f" * 64, "Interface": {"Address": "10.65.9.9/32"}},
        )
    with pytest.raises(PluginError, match="no block of this node"):
        foreign = await call(again, "IpamDriver.RequestPool", {"Pool": "10.65.9.0/24"})
        await call(again, "IpamDriver.RequestAddress", {"PoolID": foreign["PoolID"]})


async def test_sweep_releases_what_docker_never_gave_back(
    made: tuple[DockerPlugin, FakeWorkloads, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    docker, workloads, _ = made
    pool = await call(docker, "IpamDriver.RequestPool", {})
    states: dict[str, str] = {}

    async def state(spec: WorkloadSpec) -> str:
        return states[spec.id]

    monkeypatch.setattr(plugin, "handed_off_state", state)
    addresses = []
    for name in ("a", "b", "c"):
        address = (await call(docker, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"]}))["Address"]
        await call(
            docker,
            "NetworkDriver.CreateEndpoint",
            {"EndpointID": name * 64, "Interface": {"Address": address}},
        )
        addresses.append(address)
    orphan = await call(docker, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"]})  # no endpoint came
    states.update(
        {"docker-aaaaaaaaaaaa": "joined", "docker-bbbbbbbbbbbb": "gone", "docker-cccccccccccc": "waiting"}
    )
    now = max(r.since for r in docker.reservations.held.values())
    # a container whose namespace took its veth with it: at once
    assert await docker.sweep(now) == ["docker-bbbbbbbbbbbb"]
    # a container side left in the host (DeleteEndpoint lost), an address with no endpoint: after stale_after
    assert await docker.sweep(now + 30) == []
    assert await docker.sweep(now + 61) == ["docker-cccccccccccc"]
    assert sorted(workloads.specs) == ["docker-aaaaaaaaaaaa"]
    assert {f"{ip}/32" for ip in docker.reserved()} == {addresses[0]}
    assert orphan["Address"] not in {f"{ip}/32" for ip in docker.reserved()}


# --- the front ---------------------------------------------------------------------------


@pytest.fixture
async def fake_daemon(tmp_path: Path) -> AsyncIterator[str]:
    """An API socket answering the front's relays as the daemon's `docker` op does."""
    path = str(tmp_path / "api.sock")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = json.loads(await reader.readline())
        result: dict[str, Any]
        if request["call"] == "Plugin.Activate":
            result = protocol.activate()
        elif request["call"] == "IpamDriver.RequestPool":
            result = {"Err": "subnet 192.168.7.0/24 is outside routed's pools"}
        else:
            result = {protocol.UNKNOWN_CALL: True}
        writer.write(json.dumps({"ok": True, "result": result}).encode() + b"\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, path=path)
    try:
        yield path
    finally:
        server.close()
        await server.wait_closed()


async def test_front_answers_404_500_and_routed_not_running(fake_daemon: str, tmp_path: Path) -> None:
    async with TestClient(TestServer(front.application(fake_daemon, wait=0.3))) as client:
        answer = await client.post("/Plugin.Activate")  # Docker sends no body here
        assert answer.status == 200
        assert await answer.json(content_type=None) == protocol.activate()
        refused = await client.post("/IpamDriver.RequestPool", data=json.dumps({"Pool": "192.168.7.0/24"}))
        assert refused.status == 500  # how Docker's plugin client reads an error, for every driver kind
        assert (await refused.json(content_type=None))["Err"].startswith("subnet 192.168.7.0/24 is outside")
        assert (await client.post("/NetworkDriver.AllocateNetwork", data="{}")).status == 404
        assert (await client.post("/Plugin.Activate", data="{not json")).status == 400
    async with TestClient(TestServer(front.application(str(tmp_path / "nobody.sock"), wait=0.3))) as client:
        down = await client.post("/IpamDriver.RequestAddress", data="{}")
        assert down.status == 500
        assert "routed is not running on this host" in (await down.json(content_type=None))["Err"]
        assert "start it" in (await down.json(content_type=None))["Err"]


def test_front_socket_is_root_only(tmp_path: Path) -> None:
    async def run() -> int:
        path = tmp_path / "plugins" / "routed.sock"
        task = asyncio.create_task(front.serve(path, str(tmp_path / "api.sock"), 0.1))
        for _ in range(100):
            if path.exists():
                break
            await asyncio.sleep(0.02)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return mode

    assert asyncio.run(run()) == 0o600
