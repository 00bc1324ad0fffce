"""The node configuration schema: every field, its default, and the rules between fields.

Field docs here are the source of config/README.md; keep them in step.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from bgp.limits import MaxPrefixAction
from routed.bfd.packet import AuthType
from routed.config.secrets import (
    check_password_file,
    inline_secret,
    loaded_secret,
    readable_file,
    secret_digest,
    secret_file,
)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# 0 is reserved and 23456 is AS_TRANS (RFC 6793); neither may name a real AS.
RESERVED_ASNS = {0, 23456, 65535, 4294967295}
WORKLOAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class Role(StrEnum):
    NODE = "node"
    REFLECTOR = "reflector"


class PeerKind(StrEnum):
    REFLECTOR = "reflector"  # we are its client
    CLIENT = "client"  # we reflect to it (role: reflector only)
    MESH = "mesh"  # iBGP full-mesh neighbour
    NONCLIENT = "nonclient"  # iBGP peer of a reflector that is not its client (another reflector)
    EBGP = "ebgp"  # another AS, e.g. a top-of-rack router


IBGP_KINDS = {PeerKind.REFLECTOR, PeerKind.CLIENT, PeerKind.MESH, PeerKind.NONCLIENT}


def _parse_cidr(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a CIDR; write an IPv4 or IPv6 prefix such as 10.65.0.0/16 or fd00:65::/48"
            ) from exc
        raise ValueError(f"{value!r} has host bits set; did you mean {loose}?") from exc


def _parse_ip(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address; write e.g. 10.0.0.11 or fd00::11") from exc
    return value


def _parse_ipv4(value: Any) -> Any:
    parsed = _parse_ip(value)
    if isinstance(parsed, IPv6Address):
        raise ValueError(f"{value!r} is IPv6; this field is a 32-bit id written as IPv4")
    if isinstance(parsed, int):
        # A bare integer would be accepted by ipaddress but is almost always a slip.
        raise ValueError(f"{value!r} must be written as a dotted IPv4 address, e.g. 10.0.0.11")
    return parsed


def _mesh_mode(value: Any) -> Any:
    # YAML 1.1 reads a bare `off` as false; accept it for what the user meant.
    if value is False:
        return "off"
    if value is True:
        raise ValueError("write `mesh: full` or `mesh: off`")
    return value


Cidr = Annotated[IPNetwork, BeforeValidator(_parse_cidr)]
Address = Annotated[IPAddress, BeforeValidator(_parse_ip)]
RouterId = Annotated[IPv4Address, BeforeValidator(_parse_ipv4)]
Asn = Annotated[int, Field(ge=1, le=4294967294, strict=True)]
HoldTime = Annotated[int, Field(strict=True)]


def _check_asn(value: int) -> int:
    if value in RESERVED_ASNS:
        raise ValueError(f"AS {value} is reserved; pick a private AS (64512-65534 or 4200000000-4294967294)")
    return value


def _check_hold_time(value: int) -> int:
    if value != 0 and not 3 <= value <= 65535:
        raise ValueError(f"hold time {value} is not allowed; use 0 (no keepalives) or 3-65535 seconds")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GracefulRestart(Strict):
    """RFC 4724 graceful restart: peers keep our routes while we restart, and we keep theirs."""

    enabled: bool = True
    # advertised to peers: how long they keep our routes after our session drops
    restart_time: int = Field(default=120, ge=1, le=4095)
    # once a restarting peer is back: how long we wait for its End-of-RIB before we sweep
    # the routes it has not announced again
    stalepath_time: int = Field(default=360, ge=1, le=3600)
    # a restarting reflector waits this long at most for its peers' End-of-RIBs before it
    # sends its own (RFC 4724's selection deferral timer)
    select_defer_time: int = Field(default=60, ge=0, le=3600)


class Fabric(Strict):
    """Where this node peers from: the interface on the fabric and its address."""

    interface: str = Field(min_length=1, max_length=15)
    address: Address


def _peer_address(value: Any) -> Any:
    if isinstance(value, str) and "/" in value:
        raise ValueError(
            f"{value!r} is a subnet; dynamic peers are not supported (ExaBGP needs every "
            "neighbour listed), so list each client's address as its own peer"
        )
    return _parse_ip(value)


class ExportMode(StrEnum):
    ROUTES = "routes"  # every workload /32 (/128)
    AGGREGATE = "aggregate"  # the pool prefixes only


class MaxPrefixes(Strict):
    """Like BIRD's `receive limit` and FRR's `maximum-prefix`: counts every prefix the peer
    holds announced to us, accepted or refused by policy."""

    limit: int = Field(ge=1, le=10_000_000)
    action: MaxPrefixAction = MaxPrefixAction.TEARDOWN
    # teardown: the session stays down this long, then may come back (0: until a reload)
    restart_after: int = Field(default=60, ge=0, le=86400)


class BfdAuthType(StrEnum):
    SIMPLE = "simple"
    KEYED_MD5 = "keyed-md5"
    METICULOUS_KEYED_MD5 = "meticulous-keyed-md5"
    KEYED_SHA1 = "keyed-sha1"
    METICULOUS_KEYED_SHA1 = "meticulous-keyed-sha1"


class BfdAuth(Strict):
    """BFD authentication (RFC 5880 §6.7), as BIRD's `authentication` and FRR's profiles name
    it; the meticulous types refuse a replayed packet. The secret from `password` or from a
    root-owned 0600 `password_file`."""

    type: BfdAuthType = BfdAuthType.METICULOUS_KEYED_SHA1
    key_id: int = Field(default=1, ge=0, le=255)
    password: Annotated[SecretStr, AfterValidator(inline_secret)] | None = None
    password_file: Annotated[str, AfterValidator(check_password_file)] | None = None
    _secret: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _one_secret(self) -> BfdAuth:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("give password or password_file (one of them)")
        self._secret = loaded_secret(self.password, self.password_file) or ""
        longest = AuthType[self.type.name].max_secret  # the packet codec's own limit
        if len(self._secret.encode()) > longest:
            raise ValueError(f"a {self.type.value} secret is 1-{longest} bytes; use a shorter one")
        return self

    def secret(self) -> str:
        """As read when the config was loaded: a rotated file is read again by a reload."""
        return self._secret


class Bfd(Strict):
    """BFD (RFC 5880/5881, single hop) for a directly connected peer: its path is declared dead
    after `multiplier` missed packets, and its routes withdrawn at once."""

    interval_ms: int = Field(default=300, ge=10, le=60_000)
    multiplier: int = Field(default=3, ge=1, le=255)
    auth: BfdAuth | None = None


def _bfd_shorthand(value: Any) -> Any:
    return {} if value is True else (None if value is False else value)


def _max_prefixes_shorthand(value: Any) -> Any:
    return {"limit": value} if isinstance(value, int) and not isinstance(value, bool) else value


class Peer(Strict):
    address: Annotated[IPAddress, BeforeValidator(_peer_address)]
    asn: Asn | None = None  # defaults to our own AS for iBGP kinds
    kind: PeerKind
    description: str = ""
    # never printed (SecretStr); only in a config file no one but root can read (see load)
    password: Annotated[SecretStr, AfterValidator(inline_secret)] | None = None
    password_file: Annotated[str, AfterValidator(check_password_file)] | None = None
    # GTSM (RFC 5082), directly connected peers only: send with TTL 255, accept only 254-255
    ttl_security: bool = False
    hold_time: HoldTime | None = None
    graceful_restart: bool | None = None
    # keep its routes as long-lived stale once its restart time runs out; default: yes for
    # reflectors (a fabric whose reflectors are all down keeps forwarding), no otherwise
    long_lived_stale: bool | None = None
    export: ExportMode = ExportMode.ROUTES
    max_prefixes: Annotated[MaxPrefixes | None, BeforeValidator(_max_prefixes_shorthand)] = None
    bfd: Annotated[Bfd | None, BeforeValidator(_bfd_shorthand)] = None

    _md5_secret: str | None = PrivateAttr(default=None)

    _asn = field_validator("asn")(lambda cls, v: v if v is None else _check_asn(v))

    @model_validator(mode="after")
    def _one_password(self) -> Peer:
        self._md5_secret = loaded_secret(self.password, self.password_file)
        return self

    @property
    def uses_md5(self) -> bool:
        return self.password is not None or self.password_file is not None

    def md5_password(self) -> str | None:
        """The TCP-MD5 key as read when the config was loaded (a reload reads the file again)."""
        return self._md5_secret

    def secret_digests(self) -> tuple[str | None, str | None]:
        """The hashes of its TCP-MD5 key and BFD secret, for a reload to compare."""
        bfd = self.bfd.auth.secret() if self.bfd is not None and self.bfd.auth is not None else None
        return (secret_digest(self._md5_secret), secret_digest(bfd))

    _hold = field_validator("hold_time")(lambda cls, v: v if v is None else _check_hold_time(v))


def _community(value: Any) -> Any:
    if isinstance(value, str):
        high, sep, low = value.partition(":")
        if sep and high.isdigit() and low.isdigit() and int(high) < 65536 and int(low) < 65536:
            return value
    raise ValueError(f"{value!r} is not a community; write ASN:VALUE with both parts 0-65535, e.g. 64512:100")


Community = Annotated[str, BeforeValidator(_community)]


class Bgp(Strict):
    """Defaults that apply to every peer unless the peer overrides them, and route policy."""

    hold_time: HoldTime = 90
    graceful_restart: GracefulRestart = GracefulRestart()
    # how long routes of a peer that stays away past its restart time are kept (see
    # Peer.long_lived_stale); they lose to any fresh or restart-stale path. 0: never
    long_lived_stale_time: int = Field(default=86400, ge=0, le=16777215)
    max_paths: int = Field(default=8, ge=1, le=64)
    # export: attributes on the routes we announce for our workloads
    communities: tuple[Community, ...] = ()
    local_preference: int | None = Field(default=None, ge=0, le=4294967295)
    # import: besides the pools, which learned prefixes may be installed
    import_allow: tuple[Cidr, ...] = ()
    allow_default_route: bool = False
    # import: where an iBGP peer's next hops may be besides the fabric interface's own subnets
    # (an L3 fabric whose hosts sit in other subnets, reached through the underlay's routing)
    next_hops: tuple[Cidr, ...] = ()
    # every peer without its own: BIRD and FRR set no limit by default; we keep a flood from
    # taking the node's memory (~1 KB a route) and drop what is over, loudly, rather than close
    # the session (a reflector torn down is the whole fabric lost). 250,000 is 2,500 hosts of
    # 100 containers each with `ipam: none`; raise it (or `null`: no limit) for more
    max_prefixes: Annotated[MaxPrefixes | None, BeforeValidator(_max_prefixes_shorthand)] = MaxPrefixes(
        limit=250_000, action=MaxPrefixAction.DROP
    )
    # ExaBGP's reactor speed: its idle poll timeout is speed/100 s. Sockets and API commands
    # wake it at once whatever the value; what the timeout paces is idle work (timers,
    # accepting inbound sessions). At 1.0 an idle ExaBGP woke 100 times a second and cost
    # containers ~15 % of their TCP throughput on a busy 2-core host; 10.0 wakes 10 times.
    reactor_speed: float = Field(default=10.0, ge=0.1, le=10.0)

    _hold = field_validator("hold_time")(lambda cls, v: _check_hold_time(v))


class Api(Strict):
    socket: str = "/run/routed/routed.sock"

    @field_validator("socket")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not PurePosixPath(value).is_absolute():
            raise ValueError(f"{value!r} must be an absolute path, e.g. /run/routed/routed.sock")
        return value


class Docker(Strict):
    """Docker's network and IPAM plugin (`docker network create -d routed --ipam-driver routed`)."""

    enabled: bool = False
    # Docker finds legacy plugins by socket here; the file name is the driver's name
    socket: str = "/run/docker/plugins/routed.sock"
    # `docker run -p`: routed runs this CNI plugin, as podman does with the same one
    portmap_plugin: tuple[str, ...] = ("/usr/lib/cni/portmap", "/opt/cni/bin/portmap")
    # an endpoint whose container side has been back in the host (no container) this long,
    # or an address reserved for an endpoint that never came, is released (Docker's own
    # DeleteEndpoint / ReleaseAddress were lost, e.g. while routed was down)
    stale_after: int = Field(default=60, ge=1, le=86400)
    # while routed restarts, Docker's calls wait this long for it (Docker gives up after 30 s)
    # before being told that routed is not running
    restart_wait: float = Field(default=20.0, gt=0, le=25)

    @field_validator("socket")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not PurePosixPath(value).is_absolute() or not value.endswith(".sock"):
            raise ValueError(
                f"{value!r} must be an absolute path ending in .sock, e.g. /run/docker/plugins/routed.sock"
            )
        return value

    @property
    def driver_name(self) -> str:
        return PurePosixPath(self.socket).stem


def _docker_shorthand(value: Any) -> Any:
    return {"enabled": value} if isinstance(value, bool) else value


class Metrics(Strict):
    enabled: bool = True
    listen: str = "127.0.0.1:9180"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} must be HOST:PORT, e.g. 127.0.0.1:9180 or [::1]:9180")
        _parse_ip(host.strip("[]"))
        return value


class Fib(Strict):
    """How routes reach the kernel."""

    resync_interval: float = Field(default=60.0, ge=1.0, le=86400.0)
    table: int = Field(default=254, ge=1, le=4294967295)
    # install learned routes in the kernel; default: yes on nodes, no on reflectors
    install_learned: bool | None = None


class IpamMode(StrEnum):
    NONE = "none"  # addresses from the pools, one /32 route each, uniqueness up to you
    STATIC = "static"  # this node's blocks are listed in `ipam.blocks`
    ETCD = "etcd"  # blocks claimed in etcd, on demand


def _endpoint(value: Any) -> Any:
    """host:port, or a client URL: http:// is plain, https:// needs `tls`."""
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"(https?://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})/?", value)
    if match is None or not 1 <= int(match.group(3)) <= 65535:
        raise ValueError(
            f"{value!r} is not an etcd endpoint; write host:port or https://host:port, e.g. 10.0.0.1:2379"
        )
    scheme = "https://" if match.group(1) == "https://" else ""
    return f"{scheme}{match.group(2)}:{match.group(3)}"


class EtcdTls(Strict):
    """TLS to every etcd endpoint: the CA that signed the members' certificates, and this node's
    client certificate and key when etcd asks for one (`--client-cert-auth`)."""

    ca_file: Annotated[str, AfterValidator(readable_file)]
    cert_file: Annotated[str, AfterValidator(readable_file)] | None = None
    key_file: Annotated[str, AfterValidator(secret_file)] | None = None

    @model_validator(mode="after")
    def _pair(self) -> EtcdTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give cert_file and key_file together (or neither)")
        return self


class Etcd(Strict):
    """Where blocks and allocations live in `ipam: {mode: etcd}`."""

    # client URLs of the etcd members; requests fail over between them
    endpoints: tuple[Annotated[str, BeforeValidator(_endpoint)], ...] = Field(min_length=1)
    # every key routed writes starts with this
    prefix: str = Field(default="/routed", pattern=r"^/[A-Za-z0-9._/-]*$")
    # seconds one request may take before etcd counts as unreachable
    timeout: float = Field(default=3.0, gt=0, le=60)
    tls: EtcdTls | None = None
    # etcd's own users (`etcdctl auth enable`): the password from a root-owned 0600 file, or
    # inline (then only in a config file that is root's and 0600)
    username: str | None = Field(default=None, min_length=1, max_length=256)
    password: Annotated[SecretStr, AfterValidator(inline_secret)] | None = None
    password_file: Annotated[str, AfterValidator(check_password_file)] | None = None
    _password: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _access(self) -> Etcd:
        https = [e for e in self.endpoints if e.startswith("https://")]
        if https and self.tls is None:
            raise ValueError(f"{https[0]} is https: give tls: {{ca_file: ...}} to check its certificate")
        if self.tls is not None and len(https) != len(self.endpoints):
            plain = next(e for e in self.endpoints if not e.startswith("https://"))
            raise ValueError(f"tls is set, so every endpoint is reached over TLS: write https://{plain}")
        self._password = loaded_secret(self.password, self.password_file)
        if (self.username is None) != (self._password is None):
            raise ValueError("username and a password (password or password_file) go together")
        return self

    def credentials(self) -> tuple[str, str] | None:
        """(username, password) as read when the config was loaded."""
        return None if self.username is None or self._password is None else (self.username, self._password)


class Ipam(Strict):
    mode: IpamMode = IpamMode.NONE
    # prefix length of a block, per IP version (Calico's defaults)
    block_size: int = Field(default=26, ge=8, le=32)
    block_size_v6: int = Field(default=122, ge=64, le=128)
    # mode static: this node's blocks (each of block_size inside a pool; no two nodes share one)
    blocks: tuple[Cidr, ...] = ()
    etcd: Etcd | None = None
    # seconds before an empty block goes back to the pool (etcd) and before an allocation whose
    # workload is gone is released
    release_after: int = Field(default=600, ge=0, le=86400 * 30)

    def block_length(self, version: int) -> int:
        return self.block_size if version == 4 else self.block_size_v6

    @property
    def uses_blocks(self) -> bool:
        return self.mode is not IpamMode.NONE


def _ipam_shorthand(value: Any) -> Any:
    # `ipam: etcd` alone is not enough (endpoints), but `ipam: none` is; say what is missing
    if isinstance(value, str):
        return {"mode": value}
    return value


class Workload(Strict):
    """A workload attached at start-up (others arrive over the API or the CNI)."""

    id: str
    netns: str = Field(min_length=1)
    ips: tuple[Address, ...] = Field(min_length=1)
    ifname: str = Field(default="eth0", min_length=1, max_length=15)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not WORKLOAD_ID.match(value):
            raise ValueError(
                f"{value!r} is not a workload id; use 1-128 of A-Z a-z 0-9 . _ : - "
                "starting with a letter or digit"
            )
        return value


class NodeConfig(Strict):
    name: str
    router_id: RouterId
    asn: Asn
    role: Role = Role.NODE
    fabric: Fabric
    pools: tuple[Cidr, ...] = Field(min_length=1)
    ipam: Annotated[Ipam, BeforeValidator(_ipam_shorthand)] = Ipam()
    mesh: Annotated[Literal["full", "off"], BeforeValidator(_mesh_mode)] = "off"
    mesh_nodes: tuple[Address, ...] = ()
    cluster_id: RouterId | None = None
    peers: tuple[Peer, ...] = ()
    bgp: Bgp = Bgp()
    api: Api = Api()
    metrics: Metrics = Metrics()
    docker: Annotated[Docker, BeforeValidator(_docker_shorthand)] = Docker()
    fib: Fib = Fib()
    state_dir: str = "/var/lib/routed"
    workloads: tuple[Workload, ...] = ()

    _asn = field_validator("asn")(lambda cls, v: _check_asn(v))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NODE_NAME.match(value):
            raise ValueError(f"{value!r} is not a node name; use 1-63 of A-Z a-z 0-9 . _ -")
        return value

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: str) -> str:
        if not PurePosixPath(value).is_absolute():
            raise ValueError(f"{value!r} must be an absolute path, e.g. /var/lib/routed")
        return value

    @property
    def installs_learned_routes(self) -> bool:
        if self.fib.install_learned is not None:
            return self.fib.install_learned
        return self.role is Role.NODE

    def graceful_restart_with(self, peer: Peer) -> bool:
        """Whether we advertise graceful restart to `peer`, and so also help it through its own."""
        return self.bgp.graceful_restart.enabled if peer.graceful_restart is None else peer.graceful_restart

    def long_lived_stale_for(self, peer: Peer) -> bool:
        """Whether `peer`'s routes turn long-lived stale when its restart time runs out."""
        wanted = peer.kind is PeerKind.REFLECTOR if peer.long_lived_stale is None else peer.long_lived_stale
        return wanted and self.bgp.long_lived_stale_time > 0

    @property
    def effective_cluster_id(self) -> IPv4Address | None:
        """RFC 4456: a reflector without an explicit cluster id uses its router id."""
        if self.role is not Role.REFLECTOR:
            return None
        return self.cluster_id or self.router_id

    def resolved_peers(self) -> tuple[Peer, ...]:
        """Explicit peers plus one mesh peer per other mesh node, each with its AS filled in."""
        peers = [
            p.model_copy(
                update={
                    "asn": self.asn if p.asn is None else p.asn,
                    "max_prefixes": self.bgp.max_prefixes if p.max_prefixes is None else p.max_prefixes,
                }
            )
            for p in self.peers
        ]
        explicit = {p.address for p in peers}
        for address in self.mesh_nodes:
            if address != self.fabric.address and address not in explicit:
                peers.append(
                    Peer(
                        address=address, asn=self.asn, kind=PeerKind.MESH, max_prefixes=self.bgp.max_prefixes
                    )
                )
        return tuple(peers)
