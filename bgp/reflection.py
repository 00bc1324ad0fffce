"""Route reflection (RFC 4456) and what each peer is sent. Pure functions.

`advertise` answers, for one peer and one prefix, "what do we send, if anything?"
given the prefix's best path (or that it is one of our own workloads). The
speaker keeps what it has sent (Adj-RIB-Out) and sends only differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address

from bgp.model import GRACEFUL_SHUTDOWN, Export, IPAddress, IPNetwork, Path


class Role(StrEnum):
    """How we treat a peer when deciding what to send it."""

    CLIENT = "client"  # we are its reflector
    NONCLIENT = "nonclient"  # iBGP, not our client (another reflector, a mesh neighbour, our reflector)
    EBGP = "ebgp"


@dataclass(frozen=True, slots=True)
class LocalSide:
    """What the decision needs to know about ourselves."""

    router_id: IPv4Address
    asn: int
    cluster_id: IPv4Address | None  # set only when we are a reflector
    local_pref: int | None = None
    communities: tuple[tuple[int, int], ...] = ()
    pools: tuple[IPNetwork, ...] = ()  # what may leave towards eBGP peers
    draining: bool = False  # RFC 8326 graceful shutdown: ask peers to move traffic elsewhere

    @property
    def reflector(self) -> bool:
        return self.cluster_id is not None


def may_reflect(source: Role, target: Role) -> bool:
    """RFC 4456 section 6: which learned routes a reflector passes on, and to whom.

    From a client: to every other client and every non-client peer.
    From a non-client iBGP peer: to clients only.
    From eBGP: to everyone. (Sending back to the source is excluded by the caller.)
    """
    if source is Role.EBGP or target is Role.EBGP:
        return True
    if source is Role.CLIENT:
        return True
    return target is Role.CLIENT


def local_export(me: LocalSide, target: Role) -> Export:
    """Our own workload routes: next hop self.

    While draining, they carry GRACEFUL_SHUTDOWN, and iBGP peers also get local
    preference 0 so that a peer which ignores the community moves away as well.
    """
    local_pref = None if target is Role.EBGP else me.local_pref
    communities = me.communities
    if me.draining:
        communities = (*communities, GRACEFUL_SHUTDOWN)
        local_pref = None if target is Role.EBGP else 0
    return Export(local_pref=local_pref, communities=communities)


def learned_export(me: LocalSide, best: Path, source: Role, target: Role) -> Export | None:
    """The attributes `target` gets for a learned best path, or None if it gets nothing."""
    if not may_reflect(source, target):
        return None
    attrs = best.attrs
    if target is Role.EBGP:
        if not any(best.prefix.version == p.version and best.prefix.subnet_of(p) for p in me.pools):  # type: ignore[arg-type]
            return None  # only workload routes leave the AS
        # a normal eBGP advertisement: next hop self, no iBGP-only attributes
        return Export(
            origin=attrs.origin,
            as_path=tuple(a for seg in attrs.as_path for a in seg.asns),
            communities=attrs.communities,
        )
    if source is not Role.EBGP and not me.reflector:
        return None  # iBGP split horizon: without reflection, iBGP routes stay with us
    reflected = source is not Role.EBGP
    assert me.cluster_id is not None or not reflected
    return Export(
        next_hop=attrs.next_hop,
        origin=attrs.origin,
        as_path=tuple(a for seg in attrs.as_path for a in seg.asns),
        med=attrs.med,
        local_pref=attrs.local_pref if attrs.local_pref is not None else 100,
        communities=attrs.communities,
        originator_id=(attrs.originator_id or best.peer.router_id) if reflected else None,
        cluster_list=(me.cluster_id, *attrs.cluster_list) if reflected and me.cluster_id else (),
    )


def advertise(
    me: LocalSide,
    target_address: IPAddress,
    target: Role,
    local: bool,
    best: Path | None,
    source: Role | None,
) -> Export | None:
    """What `target` is sent for one prefix: our own route beats a learned one."""
    if local:
        return local_export(me, target)
    if best is None or source is None or best.peer.address == target_address:
        return None  # never back to the peer it came from
    return learned_export(me, best, source, target)
