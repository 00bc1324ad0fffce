"""Keeps routed's nftables table as wanted: made anew when missing or when its rules were
touched, its set elements edited as workloads come and go, checked again every few seconds
(a `nft flush ruleset` is undone within RESYNC_INTERVAL). Left in place when routed stops (the
workloads stay, and so does their protection); removed by `routed stop --withdraw`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from routed.config.pools import Pool
from routed.dataplane.workload import WorkloadSpec
from routed.firewall import nft
from routed.firewall.natrules import COUNT_CHAIN, NAT_CHAIN, NatRule, nat_rules, nat_skip
from routed.firewall.ruleset import (
    EMPTY,
    Desired,
    WorkloadSources,
    delete_script,
    desired,
    edit_script,
    replace_script,
)
from routed.log import event

log = logging.getLogger("routed.firewall")

RESYNC_INTERVAL = 5.0


@dataclass
class FirewallStats:
    replaced: int = 0  # the table made anew (at start, or after someone changed its rules)
    edited: int = 0  # set elements added or removed
    restored: int = 0  # times the table was found missing or changed by someone else


class Firewall:
    def __init__(self, resync_interval: float = RESYNC_INTERVAL) -> None:
        self.resync_interval = resync_interval
        self._want: Desired = EMPTY
        self._workloads: list[WorkloadSources] = []
        self._pools: list[Pool] = []
        self._fabric: list[IPv4Network | IPv6Network | IPv4Address | IPv6Address] = []
        self._nat: tuple[NatRule, ...] = ()
        self._reference: list[dict[str, Any]] | None = None  # our rules, as listed after our replace
        self._applied: Desired | None = None  # the elements we last put in the kernel
        self._nft: nft.Nft | None = None
        self._wake = asyncio.Event()
        self.error: str | None = None
        self.dropped: dict[str, int] = {}
        self.natted: dict[str, tuple[int, int]] = {}  # packets, bytes NATed by rule comment
        self.nat_connections: dict[str, int] = {}
        self.forward_drops: list[str] = []  # other tables' forward chains with policy drop
        self.stats = FirewallStats()

    def set_workloads(self, specs: Iterable[WorkloadSpec]) -> None:
        """What may be sent from each workload's veth: applied now, so a new workload's veth is
        covered as soon as it is there (its IPv4 also by rp_filter, set before the link is up)."""
        self._workloads = [WorkloadSources(s.host_ifname, s.ips) for s in specs]
        self._recompute()
        self._apply_change()

    def _recompute(self) -> None:
        networks = [p.cidr for p in self._pools]
        self._want = desired(self._workloads, networks, self._nat, nat_skip(networks, self._fabric))

    def _apply_change(self) -> None:
        """A workload came or went: one transaction of element edits against what we last put
        in, without reading the table first (a CNI ADD waits on this; the periodic sync reads
        it). Anything unexpected (the table gone, an element someone removed) takes the full
        sync's path."""
        if (
            self._nft is None
            or self._applied is None
            or self.error is not None
            or self._want.nat != self._applied.nat
        ):
            self.sync()
            return
        script = edit_script(self._want, self._applied)
        if not script:
            return
        try:
            self._nft.run(script)
        except nft.NftError:
            self.sync()
            return
        self._applied = self._want
        self.stats.edited += 1

    def set_pools(self, pools: Iterable[Pool]) -> None:
        """The pools: no source inside them may reach BGP or BFD here, and those with
        nat_outgoing leave the fabric NATed (set at start, at reload)."""
        self._pools = list(pools)
        self._nat = nat_rules(self._pools)
        self._recompute()
        self._wake.set()  # applied by run(): before it starts, the restore's first sync does

    def set_fabric(self, fabric: Iterable[IPv4Network | IPv6Network | IPv4Address | IPv6Address]) -> None:
        """Where the fabric is (its subnets, extra next-hop subnets, the peers): no NAT to there."""
        fabric = list(fabric)
        if fabric != self._fabric:
            self._fabric = fabric
            self._recompute()
            self._wake.set()

    def sync(self) -> bool:
        """Bring the kernel's table in line; False (and `error` set, logged once) if nftables
        cannot be used. Never raises: forwarding goes on, and status says what is missing."""
        try:
            if self._nft is None:
                self._nft = nft.Nft()
            self._reconcile(self._nft)
        except nft.NftError as exc:
            if str(exc) != self.error:
                log.error(
                    event(
                        "firewall_failed",
                        reason=exc,
                        impact="IPv6 sources from workloads not checked; IPv4 still by rp_filter",
                    )
                )
            self.error = str(exc)
            return False
        if self.error is not None:
            log.warning(event("firewall_recovered"))
            self.error = None
        return True

    def _reconcile(self, ctx: nft.Nft) -> None:
        listed = ctx.table()
        applied_nat = self._applied.nat if self._applied is not None else None
        if (
            listed is None
            or self._reference is None
            or nft.rules_of(listed) != self._reference
            or applied_nat != self._want.nat
        ):
            if self._reference is not None and applied_nat != self._want.nat:
                log.info(
                    event("firewall_nat_rules_changed", pools=",".join(str(r.source) for r in self._want.nat))
                )
            elif self._reference is not None:
                self.stats.restored += 1
                log.warning(
                    event(
                        "firewall_table_restored",
                        table=f"inet {nft.TABLE}",
                        found="missing" if listed is None else "rules changed",
                    )
                )
            ctx.run(replace_script(self._want))
            listed = ctx.table()
            if listed is None:
                raise nft.NftError(f"table inet {nft.TABLE} is not there right after it was made")
            self._reference = nft.rules_of(listed)
            self.stats.replaced += 1
        else:
            have = nft.elements_of(listed)
            if have != self._want.elements():
                ctx.run(edit_script(self._want, have))
                self.stats.edited += 1
        self._applied = self._want
        self._read_counters(listed)
        drops = nft.forward_drops(ctx)
        if drops != self.forward_drops and drops:
            log.warning(
                event(
                    "forwarding_dropped_by_default",
                    chains=",".join(drops),
                    impact="traffic to and from workloads is forwarded only if those tables accept it",
                    fix="start routed before dockerd, or accept the rt+ veths in DOCKER-USER",
                )
            )
        self.forward_drops = drops

    def _read_counters(self, listed: dict[str, Any]) -> None:
        self.dropped = nft.drop_counters(listed)
        self.natted = nft.counters(listed, (COUNT_CHAIN,))
        self.nat_connections = {c: n for c, (n, _) in nft.counters(listed, (NAT_CHAIN,)).items()}

    async def run(self) -> None:
        while True:
            self.sync()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.resync_interval)

    def remove(self) -> None:
        """`routed stop --withdraw`: routed leaves for good, its table with it."""
        try:
            (self._nft or nft.Nft()).run(delete_script())
            log.info(event("firewall_removed", table=f"inet {nft.TABLE}"))
        except nft.NftError as exc:
            log.error(event("firewall_remove_failed", reason=exc))

    def _refresh_counters(self) -> None:
        """The drop counters as the kernel has them now (status and metrics read them)."""
        if self._nft is None or self.error is not None:
            return
        try:
            listed = self._nft.table()
        except nft.NftError:
            return  # the next sync says what is wrong
        if listed is not None:
            self._read_counters(listed)

    def status(self) -> dict[str, Any]:
        self._refresh_counters()
        return {
            "table": f"inet {nft.TABLE}",
            "error": self.error,
            "workload_interfaces": len(self._want.interfaces),
            "dropped": dict(self.dropped),
            "replaced": self.stats.replaced,
            "edited": self.stats.edited,
            "restored": self.stats.restored,
            "nat": self._nat_status(),
            "forward_drops": list(self.forward_drops),
        }

    def _nat_status(self) -> list[dict[str, Any]]:
        """Per pool: NAT on or off, how, and what went through it."""
        rules = {rule.source: rule for rule in self._nat}
        out = []
        for pool in self._pools:
            rule = rules.get(pool.cidr)
            packets, size = self.natted.get(rule.comment, (0, 0)) if rule else (0, 0)
            out.append(
                {
                    "pool": str(pool.cidr),
                    "nat_outgoing": rule is not None,
                    "mode": rule.mode if rule else None,
                    "ports": f"{rule.ports[0]}-{rule.ports[1]}" if rule and rule.ports else None,
                    "exclude": [str(n) for n in rule.exclude] if rule else [],
                    "connections": self.nat_connections.get(rule.comment, 0) if rule else 0,
                    "packets": packets,
                    "bytes": size,
                }
            )
        return out
