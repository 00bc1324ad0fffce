"""The BGP part of the node config: the fabric, peers, their limits and BFD, and bgp's defaults."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    PrivateAttr,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)

from bgp.limits import MaxPrefixAction
from routed.bfd.packet import AuthType
from routed.config.secrets import (
    check_password_file,
    inline_secret,
    loaded_secret,
    secret_digest,
)
from routed.config.types import (
    Address,
    Asn,
    Cidr,
    HoldTime,
    IPAddress,
    PeerKind,
    Strict,
    _check_asn,
    _check_hold_time,
    _parse_ip,
)


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
    """Where this node peers from: the interface on the fabric and its address (IPv4, or IPv6
    on an IPv6-only fabric), and on a dual-stack fabric its IPv6 address too. Each session runs
    from the fabric address of its peer's family."""

    interface: str = Field(min_length=1, max_length=15)
    address: Address
    address6: Address | None = None

    @model_validator(mode="after")
    def _families(self) -> Fabric:
        if self.address6 is not None:
            if self.address6.version != 6:
                raise ValueError(f"address6 {self.address6} must be an IPv6 address, e.g. fd00::11")
            if self.address.version != 4:
                raise ValueError(
                    f"address {self.address} is IPv6 already; give address6 only beside an IPv4 address"
                )
        return self

    @property
    def addresses(self) -> tuple[IPAddress, ...]:
        return (self.address,) if self.address6 is None else (self.address, self.address6)

    def address_for(self, version: int) -> IPAddress | None:
        """The fabric address of that IP version, if the fabric has one."""
        return next((a for a in self.addresses if a.version == version), None)


def _peer_address(value: Any) -> Any:
    if isinstance(value, str) and "/" in value:
        raise ValueError(
            f"{value!r} is a subnet; to accept every client connecting from it, write "
            f"`range: {value}` (with kind: client) instead of address"
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


class PeerSettings(Strict):
    """What a session is made of, for a peer listed by address and for a range of clients."""

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
    def _one_password(self) -> PeerSettings:
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


class Peer(PeerSettings):
    address: Annotated[IPAddress, BeforeValidator(_peer_address)]


class PeerRange(PeerSettings):
    """Clients accepted from any address of `range` (BIRD's `neighbor range`, FRR's `bgp listen
    range`), each a session of its own with these settings: a reflector of many hosts need
    not list them. A peer listed by address inside the range keeps its own settings."""

    range: Cidr

    @model_validator(mode="after")
    def _clients_only(self) -> PeerRange:
        if self.kind is not PeerKind.CLIENT:
            raise ValueError(
                f"a range is for clients of this reflector (kind: client), not kind: {self.kind.value}; "
                "list other peers by address"
            )
        return self

    @property
    def selector(self) -> str:
        return str(self.range)


class PeerRegistry(PeerSettings):
    """Clients taken from the node registry in etcd (routed.registry): every node with etcd
    configured registers its fabric addresses; this reflector peers with each as a client,
    with these settings, and follows joins and leaves without a restart."""

    registry: Literal["etcd"]

    @model_validator(mode="after")
    def _clients_only(self) -> PeerRegistry:
        if self.kind is not PeerKind.CLIENT:
            raise ValueError(
                f"the registry gives clients of this reflector (kind: client), not kind: {self.kind.value}"
            )
        return self


def _peer_entry(value: Any) -> str:
    if isinstance(value, dict):
        for field in ("range", "registry"):
            if field in value:
                return f"peer[{field}]"
        return "peer[address]"
    if isinstance(value, PeerRange):
        return "peer[range]"
    return "peer[registry]" if isinstance(value, PeerRegistry) else "peer[address]"


# a peer by address, a range of clients, or the registry's; the tags carry brackets so that an
# error's location (routed.config.document) skips them, as it skips pydantic's validator names
PeerEntry = Annotated[
    Annotated[Peer, Tag("peer[address]")]
    | Annotated[PeerRange, Tag("peer[range]")]
    | Annotated[PeerRegistry, Tag("peer[registry]")],
    Discriminator(_peer_entry),
]


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
