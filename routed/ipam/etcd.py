"""IPAM mode etcd: blocks claimed in etcd when a node needs one, allocations recorded there.

The node keeps what it owns in a local cache (`<state_dir>/ipam.json`), so that while etcd
is unreachable it goes on allocating from blocks it already owns (the block is ours: nobody
else can hand out its addresses) and records those allocations once etcd is back. Only a
new block needs etcd, and then the error says so.

Maintenance (the daemon, every few seconds): records written while etcd was away are sent;
a block without workloads for `ipam.release_after` seconds goes back to the pool; an
allocation in etcd whose workload no longer exists on this node is released after the same
grace time (a crash between allocation and attach, a workload removed while we were down).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Annotated

from pydantic import Field

from routed import statefile
from routed.config import NodeConfig
from routed.ipam import blocks
from routed.ipam.backends import (
    OwnerLookup,
    Refused,
    Unavailable,
    check_requested,
    in_text,
    refuse_foreign,
    versions_of,
)
from routed.ipam.blocks import IPAddress, IPNetwork
from routed.ipam.etcdstore import Allocation, EtcdStore, EtcdUnreachable
from routed.log import event

log = logging.getLogger("routed.ipam")

CACHE_VERSION = 1
CLAIM_ATTEMPTS = 64  # blocks tried when others keep winning the race for them


WorkloadName = Annotated[str, Field(min_length=1, max_length=256)]


class CacheFile(statefile.StateModel):
    version: int
    blocks: tuple[IPv4Network | IPv6Network, ...] = ()
    to_record: dict[IPv4Address | IPv6Address, WorkloadName] = Field(default_factory=dict)
    to_forget: dict[IPv4Address | IPv6Address, WorkloadName] = Field(default_factory=dict)
    empty_since: dict[IPv4Network | IPv6Network, float] = Field(default_factory=dict)
    orphan_since: dict[IPv4Address | IPv6Address, float] = Field(default_factory=dict)


@dataclass
class Cache:
    """What this node owns and owes etcd; saved after every change."""

    path: Path
    blocks: set[IPNetwork] = field(default_factory=set)
    to_record: dict[IPAddress, str] = field(default_factory=dict)  # ip -> workload, etcd was away
    to_forget: dict[IPAddress, str] = field(default_factory=dict)
    empty_since: dict[IPNetwork, float] = field(default_factory=dict)
    orphan_since: dict[IPAddress, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Cache:
        try:
            stored = statefile.load(path, CACHE_VERSION, CacheFile)
        except statefile.StateFileError as exc:
            raise Unavailable(f"IPAM cache {exc}; move it away to rebuild it from etcd") from exc
        if stored is None:
            return cls(path)
        return cls(
            path,
            set(stored.blocks),
            dict(stored.to_record),
            dict(stored.to_forget),
            dict(stored.empty_since),
            dict(stored.orphan_since),
        )

    def save(self) -> None:
        data = {
            "version": CACHE_VERSION,
            "blocks": sorted(map(str, self.blocks)),
            "to_record": {str(k): v for k, v in self.to_record.items()},
            "to_forget": {str(k): v for k, v in self.to_forget.items()},
            "empty_since": {str(k): v for k, v in self.empty_since.items()},
            "orphan_since": {str(k): v for k, v in self.orphan_since.items()},
        }
        statefile.save(self.path, data)


def _order(network: IPNetwork) -> tuple[int, int]:
    return (network.version, int(network.network_address))


class EtcdIpam:
    def __init__(self, cfg: NodeConfig, owner_of: OwnerLookup | None = None) -> None:
        settings = cfg.ipam.etcd
        assert settings is not None  # the config check requires it in mode etcd
        self.cfg = cfg
        self.node = cfg.name
        self.store = EtcdStore(
            settings.endpoints, settings.prefix, settings.timeout, settings.tls, settings.credentials()
        )
        self.cache = Cache.load(Path(cfg.state_dir) / "ipam.json")
        self._owner_of = owner_of
        self._where = ", ".join(settings.endpoints)
        self._refused_logged: set[IPNetwork] = set()

    def block_problem(self, block: IPNetwork) -> str | None:
        """Why a block etcd (or the cache) says is ours cannot be: never installed or announced."""
        length = self.cfg.ipam.block_length(block.version)
        return blocks.block_problem(block, self.cfg.pool_networks, length, (self.cfg.fabric.address,))

    def _valid(self, block: IPNetwork, where: str) -> bool:
        problem = self.block_problem(block)
        if problem is not None and block not in self._refused_logged:
            self._refused_logged.add(block)
            log.error(
                event(
                    "ipam_block_refused",
                    block=block,
                    source=where,
                    reason=problem,
                    action="neither installed nor announced; fix or delete its record",
                )
            )
        return problem is None

    def owned_blocks(self) -> tuple[IPNetwork, ...]:
        return tuple(sorted((b for b in self.cache.blocks if self._valid(b, "cache")), key=_order))

    async def close(self) -> None:
        await self.store.close()

    # --- allocation ---------------------------------------------------------------------

    def _reload(self) -> None:
        """The file is the truth: a `routed workload add` run while no daemon answered (at
        start-up, say) may have claimed a block since we last looked; never save over it."""
        self.cache = Cache.load(self.cache.path)

    async def assign(
        self,
        workload_id: str,
        requested: Sequence[IPAddress],
        used: Set[IPAddress],
        within: Sequence[IPNetwork] | None = None,
    ) -> tuple[IPAddress, ...]:
        self._reload()
        if requested:
            check_requested(requested, self.cfg, used)
            for ip in requested:
                await self._take(workload_id, ip)
            return tuple(requested)
        return tuple(
            [
                await self._next_free(workload_id, version, used, within)
                for version in versions_of(self.cfg, within)
            ]
        )

    async def _take(self, workload_id: str, ip: IPAddress) -> None:
        """`--ip`: in one of our blocks, or in a free block we then claim; never in another node's."""
        length = self.cfg.ipam.block_length(ip.version)
        block = blocks.block_of(ip, length)
        if (problem := self.block_problem(block)) is not None:
            raise Refused(f"{ip} is inside block {block}, which is {problem}; take another address")
        if block not in self.cache.blocks:
            try:
                owner = (await self.store.blocks()).get(block)
                if owner is None and await self.store.claim(block, self.node, time.time()):
                    self._claimed(block, reason="requested address")
                else:
                    owner = owner or (await self.store.blocks()).get(block)
            except EtcdUnreachable as exc:
                if self._owner_of is not None:
                    refuse_foreign(ip, self.owned_blocks(), self._owner_of)
                raise Unavailable(
                    f"{exc} at {self._where}: cannot tell who owns block {block}; only addresses of "
                    f"this node's blocks ({self._owned_text(ip.version)}) can be given until it is back"
                ) from exc
            if block not in self.cache.blocks:
                raise Refused(
                    f"{ip} is inside block {block}, which belongs to node {owner} (etcd); "
                    "take an address of this node's blocks, or omit --ip"
                )
        holder = await self._record(ip, workload_id)
        if holder is not None:
            raise Refused(f"{ip} is already given to workload {holder.workload} on node {holder.node} (etcd)")

    async def _next_free(
        self, workload_id: str, version: int, used: Set[IPAddress], within: Sequence[IPNetwork] | None
    ) -> IPAddress:
        taken = set(used)
        while True:
            own = [b for b in self.owned_blocks() if b.version == version]
            ip = blocks.first_free(own, taken, self.cfg.pool_networks, within)
            if ip is None:
                await self._claim_new(version, within)
                continue
            holder = await self._record(ip, workload_id)
            if holder is None:
                return ip
            # recorded by an earlier run of ours, or by hand: not ours to give again
            log.warning(event("ipam_address_held", ip=ip, node=holder.node, workload=holder.workload))
            taken.add(ip)

    async def _claim_new(self, version: int, within: Sequence[IPNetwork] | None = None) -> IPNetwork:
        length = self.cfg.ipam.block_length(version)
        try:
            claimed = await self.store.blocks()
            candidates = (
                block
                for block in blocks.first_unclaimed(self.cfg.pool_networks, version, length, set(claimed))
                if (within is None or blocks.overlaps(block, within)) and self.block_problem(block) is None
            )
            for attempt, block in enumerate(candidates):
                if attempt >= CLAIM_ATTEMPTS:
                    break
                if await self.store.claim(block, self.node, time.time()):
                    self._claimed(block, reason="blocks full")
                    return block
        except EtcdUnreachable as exc:
            raise Unavailable(
                f"{exc} at {self._where}: this node's IPv{version} blocks ({self._owned_text(version)}) "
                "are full and a new block can only be claimed in etcd; bring etcd back, or delete "
                "unused workloads"
            ) from exc
        raise Refused(
            f"every IPv{version} block of the pools{in_text(within)} is claimed by some node; add a pool"
            + ("" if within is None else " or use a wider subnet")
        )

    def _claimed(self, block: IPNetwork, reason: str) -> None:
        self.cache.blocks.add(block)
        self.cache.save()
        log.info(event("ipam_block_claimed", block=block, node=self.node, reason=reason))

    def _owned_text(self, version: int) -> str:
        return ", ".join(str(b) for b in self.owned_blocks() if b.version == version) or "none"

    async def _record(self, ip: IPAddress, workload_id: str) -> Allocation | None:
        block = blocks.block_of(ip, self.cfg.ipam.block_length(ip.version))
        if self.cache.empty_since.pop(block, None) is not None:
            self.cache.save()  # in use again: not to be released under the new workload
        try:
            return await self.store.record(ip, Allocation(self.node, workload_id))
        except EtcdUnreachable:
            if block not in self.cache.blocks:
                raise
            self.cache.to_record[ip] = workload_id  # ours by block: safe now, told to etcd later
            self.cache.to_forget.pop(ip, None)
            self.cache.save()
            log.warning(event("ipam_allocated_offline", ip=ip, workload=workload_id, block=block))
            return None

    async def release(self, workload_id: str, ips: Sequence[IPAddress]) -> None:
        self._reload()
        for ip in ips:
            if self.cache.to_record.pop(ip, None) is not None:
                self.cache.save()
                continue
            try:
                await self.store.forget(ip, Allocation(self.node, workload_id))
            except EtcdUnreachable:
                self.cache.to_forget[ip] = workload_id
                self.cache.save()

    # --- start and maintenance ----------------------------------------------------------

    async def start(self) -> None:
        """Align the cache with etcd (etcd wins, but a block of ours it forgot is claimed again)."""
        self._reload()
        try:
            claimed = await self.store.blocks()
        except EtcdUnreachable as exc:
            log.warning(
                event(
                    "ipam_etcd_unreachable",
                    endpoints=self._where,
                    reason=exc,
                    action=f"allocating from the {len(self.cache.blocks)} cached blocks",
                )
            )
            return
        mine = {b for b, node in claimed.items() if node == self.node and self._valid(b, "etcd")}
        for block in sorted(self.cache.blocks - mine, key=_order):
            if not self._valid(block, "cache"):
                continue
            owner = claimed.get(block)
            if owner is None and await self.store.claim(block, self.node, time.time()):
                mine.add(block)
                log.warning(event("ipam_block_reclaimed", block=block, reason="etcd had forgotten it"))
            else:
                log.error(
                    event("ipam_block_lost", block=block, owner=owner, action="no longer announced as ours")
                )
        if mine != self.cache.blocks:
            self.cache.blocks = mine
            self.cache.save()
        await self._flush()

    async def _flush(self) -> None:
        for ip, workload in list(self.cache.to_record.items()):
            holder = await self.store.record(ip, Allocation(self.node, workload))
            if holder is not None:
                log.error(
                    event("address_conflict", ip=ip, ours=workload, holder=f"{holder.node}/{holder.workload}")
                )
            del self.cache.to_record[ip]
            self.cache.save()
        for ip, workload in list(self.cache.to_forget.items()):
            await self.store.forget(ip, Allocation(self.node, workload))
            del self.cache.to_forget[ip]
            self.cache.save()

    async def maintain(self, in_use: Set[IPAddress], now: float | None = None) -> bool:
        """One round of upkeep; True if the blocks we own changed."""
        now = time.time() if now is None else now
        grace = self.cfg.ipam.release_after
        self._reload()
        before = self.owned_blocks()
        try:
            await self._flush()
            await self._release_empty_blocks(in_use, now, grace)
            await self._release_orphans(in_use, now, grace)
        except EtcdUnreachable:
            pass  # what was released before etcd went away stays released: kept and reported
        finally:
            self.cache.save()
        return self.owned_blocks() != before

    async def _release_empty_blocks(self, in_use: Set[IPAddress], now: float, grace: float) -> None:
        for block in self.owned_blocks():
            if blocks.in_use(block, in_use) or any(ip in block for ip in self.cache.to_record):
                self.cache.empty_since.pop(block, None)
                continue
            since = self.cache.empty_since.setdefault(block, now)
            if now - since < grace:
                continue
            await self.store.release_block(block, self.node)
            self.cache.blocks.discard(block)
            del self.cache.empty_since[block]
            log.info(event("ipam_block_released", block=block, empty_s=round(now - since)))

    async def _release_orphans(self, in_use: Set[IPAddress], now: float, grace: float) -> None:
        recorded = {ip: a for ip, a in (await self.store.allocations()).items() if a.node == self.node}
        for ip in list(self.cache.orphan_since):
            if ip not in recorded or ip in in_use:
                del self.cache.orphan_since[ip]
        for ip, allocation in recorded.items():
            if ip in in_use:
                continue
            since = self.cache.orphan_since.setdefault(ip, now)
            if now - since >= grace:
                await self.store.forget(ip, allocation)
                del self.cache.orphan_since[ip]
                log.warning(
                    event(
                        "ipam_allocation_released",
                        ip=ip,
                        workload=allocation.workload,
                        reason="no such workload on this node",
                        waited_s=round(now - since),
                    )
                )
