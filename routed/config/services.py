"""The node's services in its config: API, Docker, metrics, FIB, IPAM and etcd, declared workloads."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from routed.config.secrets import (
    check_password_file,
    inline_secret,
    loaded_secret,
    readable_file,
    secret_file,
)
from routed.config.types import (
    WORKLOAD_ID,
    Address,
    Cidr,
    Strict,
    _parse_ip,
)


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
