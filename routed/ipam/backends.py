"""The IPAM modes behind one interface: which blocks this node owns, which address a workload gets.

- none: addresses from the pools, one /32 route each; uniqueness across nodes is up to you.
- static: this node's blocks come from its config (`ipam.blocks`).
- etcd: blocks are claimed in etcd on demand (routed.ipam.etcd).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from typing import Protocol

from routed.config import NodeConfig
from routed.ipam import blocks, pools
from routed.ipam.blocks import IPAddress, IPNetwork

# Who announces this address on the fabric, as (the prefix: its /32 or a block holding it,
# the announcing node's address); None if nobody else does.
OwnerLookup = Callable[[IPAddress], tuple[IPNetwork, str] | None]


class IpamError(Exception):
    """An address cannot be given; the message says why and what to do."""


class Refused(IpamError):
    """The request itself is wrong (another node's address, outside the pools...)."""


class Unavailable(IpamError):
    """The datastore cannot be reached for something only it can decide (a new block)."""


class Ipam(Protocol):
    cfg: NodeConfig  # replaced by a config reload (pools may change; ipam: may not)

    def owned_blocks(self) -> tuple[IPNetwork, ...]: ...

    async def assign(
        self,
        workload_id: str,
        requested: Sequence[IPAddress],
        used: Set[IPAddress],
        within: Sequence[IPNetwork] | None = None,
    ) -> tuple[IPAddress, ...]:
        """Addresses for a workload: `requested` if it may have them, else one free address per
        IP version of the pools; with `within` (subnets inside the pools), one per version of
        those, inside them."""

    async def release(self, workload_id: str, ips: Sequence[IPAddress]) -> None: ...

    async def start(self) -> None:
        """Align with the datastore at daemon start (best effort: it may be away)."""

    async def maintain(self, in_use: Set[IPAddress], now: float | None = None) -> bool:
        """Periodic upkeep; True if the blocks this node owns changed."""

    async def close(self) -> None: ...


def versions_of(cfg: NodeConfig, within: Sequence[IPNetwork] | None) -> list[int]:
    return sorted({p.version for p in (cfg.pool_networks if within is None else within)})


def in_text(within: Sequence[IPNetwork] | None) -> str:
    return "" if within is None else f" inside {', '.join(map(str, within))}"


def check_requested(requested: Sequence[IPAddress], cfg: NodeConfig, used: Set[IPAddress]) -> None:
    if len({ip.version for ip in requested}) != len(requested):
        raise Refused("give at most one IPv4 and one IPv6 address per workload")
    for ip in requested:
        try:
            pools.check_requested(ip, cfg.pool_networks, used)
        except pools.NotInPool as exc:
            raise Refused(str(exc)) from exc


class _NoDatastore:
    """The modes with nothing to keep up: the workloads' own addresses are the whole state."""

    async def release(self, workload_id: str, ips: Sequence[IPAddress]) -> None:
        return None

    async def start(self) -> None:
        return None

    async def maintain(self, in_use: Set[IPAddress], now: float | None = None) -> bool:
        return False

    async def close(self) -> None:
        return None


class PoolIpam(_NoDatastore):
    """Mode none: the lowest free address of the pools, as before blocks."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg

    def owned_blocks(self) -> tuple[IPNetwork, ...]:
        return ()

    async def assign(
        self,
        workload_id: str,
        requested: Sequence[IPAddress],
        used: Set[IPAddress],
        within: Sequence[IPNetwork] | None = None,
    ) -> tuple[IPAddress, ...]:
        if requested:
            check_requested(requested, self.cfg, used)
            return tuple(requested)
        choose_from = self.cfg.pool_networks if within is None else within
        try:
            return tuple(pools.allocate(choose_from, used, v) for v in versions_of(self.cfg, within))
        except (pools.NotInPool, pools.PoolExhausted) as exc:
            raise Refused(str(exc)) from exc


def refuse_foreign(ip: IPAddress, own: Sequence[IPNetwork], owner_of: OwnerLookup) -> None:
    """`--ip` of an address another node announces (inside its block, or as its /32) would
    hijack its workload: refuse, naming that node."""
    if blocks.containing(ip, own) is not None:
        return
    found = owner_of(ip)
    if found is None:
        return
    prefix, owner = found
    where = (
        f"inside block {prefix}, which belongs to" if prefix.prefixlen < ip.max_prefixlen else "announced by"
    )
    raise Refused(f"{ip} is {where} the node at {owner}; take an address of this node's blocks, or omit --ip")


class StaticIpam(_NoDatastore):
    """Mode static: the blocks listed in `ipam.blocks` are this node's."""

    def __init__(self, cfg: NodeConfig, owner_of: OwnerLookup | None = None) -> None:
        self.cfg = cfg
        self._owner_of: OwnerLookup = owner_of or (lambda ip: None)

    def owned_blocks(self) -> tuple[IPNetwork, ...]:
        return self.cfg.ipam.blocks

    async def assign(
        self,
        workload_id: str,
        requested: Sequence[IPAddress],
        used: Set[IPAddress],
        within: Sequence[IPNetwork] | None = None,
    ) -> tuple[IPAddress, ...]:
        own = self.owned_blocks()
        if requested:
            check_requested(requested, self.cfg, used)
            for ip in requested:
                refuse_foreign(ip, own, self._owner_of)
            return tuple(requested)
        out: list[IPAddress] = []
        versions = sorted({b.version for b in own}) if within is None else versions_of(self.cfg, within)
        for version in versions:
            mine = [b for b in own if b.version == version]
            free = blocks.first_free(mine, used, self.cfg.pool_networks, within)
            if free is None:
                if within is not None and not any(blocks.overlaps(b, within) for b in mine):
                    raise Refused(
                        f"no block of this node ({', '.join(map(str, mine)) or 'none'}) "
                        f"lies{in_text(within)}; "
                        "use a subnet that holds this node's blocks, or add such a block to ipam.blocks"
                    )
                raise Refused(
                    f"every IPv{version} block of this node is full{in_text(within)} "
                    f"({', '.join(map(str, mine))}); add a block to ipam.blocks or delete unused workloads"
                )
            out.append(free)
        return tuple(out)


def make_ipam(cfg: NodeConfig, owner_of: OwnerLookup | None = None) -> Ipam:
    from routed.config.services import IpamMode

    if cfg.ipam.mode is IpamMode.STATIC:
        return StaticIpam(cfg, owner_of)
    if cfg.ipam.mode is IpamMode.ETCD:
        from routed.ipam.etcd import EtcdIpam

        return EtcdIpam(cfg, owner_of)
    return PoolIpam(cfg)
