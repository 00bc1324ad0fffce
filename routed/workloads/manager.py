"""Add, delete and restore workloads: the one place that touches both the store and the kernel.

The daemon and the daemon-less CLI both use it; the caller decides what to do
with the resulting routes (hand them to the reconciler, or apply them once).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Sequence, Set

from pyroute2.netlink.exceptions import NetlinkError

from routed.config import NodeConfig
from routed.config.types import WORKLOAD_ID
from routed.dataplane.fabric import workload_mtu
from routed.dataplane.inspect import set_mtu
from routed.dataplane.workload import Attached, WorkloadError, WorkloadSpec, attach, detach, is_attached
from routed.fib.routes import Route
from routed.ipam.backends import Ipam, Refused, make_ipam
from routed.log import event
from routed.netns import NetnsError
from routed.workloads.store import WorkloadStore

log = logging.getLogger("routed.workloads")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UsageError(Exception):
    """The request itself is wrong (exit code 2); the message says how to fix it."""


class NotFound(Exception):
    pass


class WorkloadManager:
    def __init__(
        self,
        cfg: NodeConfig,
        store: WorkloadStore,
        on_change: Callable[[list[Route]], None] | None = None,
        ipam: Ipam | None = None,
        reserved: Callable[[], Set[IPAddress]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.ipam = ipam if ipam is not None else make_ipam(cfg)
        self._on_change = on_change
        # addresses handed out but not yet in a workload (Docker's IPAM asks before its endpoint)
        self._reserved = reserved or frozenset
        self._workloads: dict[str, WorkloadSpec] = {}
        # One add or delete at a time in this process: each holds the store's file lock across
        # awaits (veth, etcd), and a second task blocking on that lock would stop the loop.
        self._serial = asyncio.Lock()
        # each workload's interface (MAC, MTU) as this process last attached it
        self.attached: dict[str, Attached] = {}

    def routes(self) -> list[Route]:
        return [r for w in self._workloads.values() for r in w.routes(self.cfg.fib.table)]

    def current(self) -> list[WorkloadSpec]:
        """The workloads as this process knows them, without the store's file lock: the daemon's
        view (an add or delete holds that lock across awaits; taking it again in the same
        process, from another task, would block the event loop for good)."""
        return sorted(self._workloads.values(), key=lambda w: w.id)

    @property
    def exclusive(self) -> asyncio.Lock:
        """Held by every add and delete: an IPAM of the caller's that hands out addresses takes
        it too, so that two allocations never see the same `addresses_in_use`."""
        return self._serial

    async def stored(self) -> list[WorkloadSpec]:
        """Every stored workload, including those a restore could not attach."""
        async with self._serial:
            with self.store.locked():
                return sorted(self.store.load().values(), key=lambda w: w.id)

    def addresses_in_use(self) -> set[IPAddress]:
        """Every address of a workload or reserved for one (the IPAM's `used`)."""
        return {ip for w in self._workloads.values() for ip in w.ips} | set(self._reserved())

    def all(self) -> list[WorkloadSpec]:
        with self.store.locked():
            self._workloads = self.store.load()
        return sorted(self._workloads.values(), key=lambda w: w.id)

    async def mtu(self) -> int | None:
        return await workload_mtu(self.cfg.mtu, self.cfg.fabric.interface)

    async def apply_mtu(self) -> tuple[int | None, int]:
        """Every workload's veth to the MTU of now (a reload: a new `mtu:` or fabric MTU);
        that MTU, and how many were changed."""
        mtu = await self.mtu()
        if mtu is None:
            return None, 0
        changed = 0
        async with self._serial:
            for spec in self.current():
                try:
                    outcome = await set_mtu(spec, mtu)
                except (OSError, WorkloadError, NetlinkError, NetnsError) as exc:
                    log.warning(event("workload_mtu_failed", workload=spec.id, mtu=mtu, reason=exc))
                    continue
                if outcome == "changed":
                    changed += 1
                    log.info(event("workload_mtu_changed", workload=spec.id, mtu=mtu))
                elif outcome == "unreachable":
                    why = "its container side is the runtime's; it takes the MTU when recreated"
                    log.info(event("workload_mtu_kept", workload=spec.id, mtu=mtu, reason=why))
        return mtu, changed

    async def forget_vanished(self) -> list[str]:
        """CNI workloads whose container is gone without a DEL (`ctr run -d --cni` never sends
        one; a runtime that crashed): their namespace path is gone and their veth with it, so
        the address and the workload go too. Workloads of the CLI, the API or the config are
        kept (their namespace may come back); a runtime's (Docker's) are its plugin's to sweep."""
        gone = []
        for spec in await self.stored():  # those a restore could not attach too
            if not spec.network or spec.handed_off or os.path.exists(spec.netns) or await is_attached(spec):
                continue
            try:
                await self.delete(spec.id)
            except NotFound:
                continue  # its DEL came meanwhile
            log.info(
                event(
                    "workload_vanished", workload=spec.id, netns=spec.netns, ips=",".join(map(str, spec.ips))
                )
            )
            gone.append(spec.id)
        return gone

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.routes())

    def take_over(self) -> dict[str, WorkloadSpec]:
        """The workloads to restore: stored plus configured. The caller holds the store lock."""
        stored = self.store.load()
        for declared in self.cfg.workloads:
            stored[declared.id] = WorkloadSpec(declared.id, declared.netns, declared.ips, declared.ifname)
        self.store.save(stored)
        return stored

    async def restore(self, stored: dict[str, WorkloadSpec] | None = None) -> list[str]:
        """Attach every configured and stored workload; returns the ids that failed."""
        if stored is None:
            async with self._serial:
                with self.store.locked():
                    stored = self.take_over()
        failed = []
        mtu = await self.mtu()
        for spec in stored.values():
            try:
                await attach(spec, restoring=True, mtu=mtu)
            except (WorkloadError, OSError) as exc:
                # Keep it in the store: its namespace may come back (a container restart);
                # a runtime's workload is for the runtime's plugin to delete.
                failed.append(spec.id)
                log.error(event("workload_restore_failed", workload=spec.id, netns=spec.netns, reason=exc))
        # An API request may have added one meanwhile, and one may be adding now, holding the
        # store's file lock across its awaits: taking that lock here without waiting our turn
        # blocked the event loop on flock for good (a daemon frozen at start-up, seen in CI
        # as "routed did not answer workload.add within 30 s" during `lab up`).
        async with self._serial:
            with self.store.locked():
                self._workloads = {k: v for k, v in self.store.load().items() if k not in failed}
        self._changed()
        return failed

    async def add(
        self,
        workload_id: str,
        netns: str,
        ips: Sequence[IPAddress] = (),
        ifname: str = "eth0",
        guard: Callable[[], None] | None = None,
        runtime: str = "",
        network: str = "",
        stages: Stages | None = None,
    ) -> WorkloadSpec:
        """Add a workload. With `runtime`, the runtime's IPAM gave `ips` (nothing is assigned or
        released here) and the runtime moves the container side (see WorkloadSpec.runtime).
        `stages`, if given, gets the time each step took (the API logs them)."""
        if not WORKLOAD_ID.match(workload_id):
            raise UsageError(
                f"{workload_id!r} is not a workload id; use 1-128 of A-Z a-z 0-9 . _ : - "
                "starting with a letter or digit"
            )
        if not 1 <= len(ifname) <= 15:
            raise UsageError(f"interface name {ifname!r} must be 1-15 characters")
        if len(network) > 128:
            raise UsageError(f"network name {network[:20]!r}... must be at most 128 characters")
        async with self._serial:
            return await self._add(
                workload_id, netns, ips, ifname, guard, runtime, network, stages or Stages()
            )

    async def _add(
        self,
        workload_id: str,
        netns: str,
        ips: Sequence[IPAddress],
        ifname: str,
        guard: Callable[[], None] | None,
        runtime: str,
        network: str,
        stages: Stages,
    ) -> WorkloadSpec:
        with self.store.locked():
            if guard is not None:
                guard()  # e.g. "a daemon started meanwhile: go through it instead"
            current = self.store.load()
            stages.mark("store")
            existing = current.get(workload_id)
            if existing is not None:
                if existing.netns != netns or (ips and tuple(ips) != existing.ips):
                    raise UsageError(
                        f"workload {workload_id} already exists in {existing.netns} with "
                        f"{', '.join(map(str, existing.ips))}; delete it first"
                    )
                spec = existing
            elif runtime:
                spec = WorkloadSpec(workload_id, netns, tuple(ips), ifname, runtime, network)
            else:
                spec = WorkloadSpec(
                    workload_id,
                    netns,
                    await self._addresses(workload_id, ips, current),
                    ifname,
                    network=network,
                )
            stages.mark("ipam")
            try:
                self.attached[spec.id] = await attach(
                    spec, mtu=self.cfg.mtu, mtu_of=self.cfg.fabric.interface
                )
                stages.mark("attach")
            except (WorkloadError, OSError):
                if existing is None:
                    await detach(spec)  # leave nothing half-made behind
                    if not spec.runtime:
                        await self.ipam.release(spec.id, spec.ips)
                raise
            current[spec.id] = spec
            self.store.save(current)
            stages.mark("save")
            self._workloads = current
        self._changed()
        stages.mark("tables")
        log.info(
            event(
                "workload_added",
                workload=spec.id,
                netns=spec.netns,
                ips=",".join(map(str, spec.ips)),
                veth=spec.host_ifname,
            )
        )
        return spec

    async def _addresses(
        self, workload_id: str, requested: Sequence[IPAddress], current: dict[str, WorkloadSpec]
    ) -> tuple[IPAddress, ...]:
        used = {ip for w in current.values() for ip in w.ips} | set(self._reserved())
        try:
            return await self.ipam.assign(workload_id, requested, used)
        except Refused as exc:
            raise UsageError(str(exc)) from exc

    async def delete(
        self, workload_id: str, guard: Callable[[], None] | None = None, stages: Stages | None = None
    ) -> WorkloadSpec:
        async with self._serial:
            return await self._delete(workload_id, guard, stages or Stages())

    async def _delete(
        self, workload_id: str, guard: Callable[[], None] | None, stages: Stages
    ) -> WorkloadSpec:
        with self.store.locked():
            if guard is not None:
                guard()
            current = self.store.load()
            spec = current.get(workload_id)
            if spec is None:
                raise NotFound(f"no workload {workload_id!r} on this node; `routed workload list` shows them")
            stages.mark("store")
            await detach(spec)
            stages.mark("detach")
            self.attached.pop(workload_id, None)
            del current[workload_id]
            self.store.save(current)
            stages.mark("save")
            self._workloads = current
            if not spec.runtime:
                await self.ipam.release(spec.id, spec.ips)
            stages.mark("ipam")
        self._changed()
        stages.mark("tables")
        log.info(event("workload_deleted", workload=spec.id, veth=spec.host_ifname))
        return spec


class Stages:
    """Milliseconds between marks, by the name of the stage each mark ends."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] = round((now - self._last) * 1000, 2)
        self._last = now
