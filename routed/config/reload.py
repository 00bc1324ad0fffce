"""What a config reload changes, and whether it can be applied without a restart. Pure.

A reload applies only the difference: peers added or removed touch no other session;
pools and import policy re-judge received routes; export settings re-send what peers
should have. A field that names who this node is (router id, AS, name, its fabric
address) or where it keeps things (sockets, state, tables) needs a restart, and a
reload that changes one is refused as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from routed.config.derived import resolved_peers, resolved_ranges
from routed.config.peering import Peer
from routed.config.schema import NodeConfig

# dotted paths of fields a running daemon cannot take over: refuse, say "restart"
NEEDS_RESTART = (
    "name",
    "router_id",
    "asn",
    "role",
    "fabric",
    "cluster_id",
    "ipam",
    "api",
    "metrics",
    "docker",
    "state_dir",
    "fib.table",
    "fib.install_learned",
    "bgp.reactor_speed",
)
# fields that change what we accept from peers, or what we send them
POLICY = ("pools", "bgp.import_allow", "bgp.allow_default_route", "bgp.max_paths")
EXPORT = ("bgp.communities", "bgp.local_preference")
# defaults of every session's OPEN or timers: a change resets the sessions that use them
SESSION_DEFAULTS = ("bgp.hold_time", "bgp.graceful_restart.enabled", "bgp.graceful_restart.restart_time")


def _session_settings(peer: Peer) -> Peer:
    """What of a peer's settings its session is made of (not its description, export or limit)."""
    return peer.model_copy(
        update={
            "description": "",
            "export": Peer.model_fields["export"].default,
            "max_prefixes": None,
            "bfd": None,
        }
    )


def _value(dumped: dict[str, Any], path: str) -> Any:
    value: Any = dumped
    for part in path.split("."):
        value = value[part]
    return value


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"bgp.hold_time": 90, ...}: every field as a dotted path, lists kept whole."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_leaves(value, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: data}


@dataclass(frozen=True)
class ReloadPlan:
    refused: tuple[str, ...] = ()  # "router_id: 10.0.0.11 -> 10.0.0.99" and the like
    changed: tuple[str, ...] = ()  # every changed field, dotted
    peers_added: tuple[Peer, ...] = ()
    peers_removed: tuple[Peer, ...] = ()
    peers_changed: tuple[Peer, ...] = ()  # same address, new settings: that session resets
    bfd_rekeyed: tuple[Peer, ...] = ()  # a new BFD secret (the session goes on with it)
    ranges_changed: bool = False  # a range of clients added, removed or changed (bgp.dynamic)
    policy_changed: bool = False
    export_changed: bool = False
    workloads_added: tuple[str, ...] = ()
    workloads_left: tuple[str, ...] = field(default=())  # dropped from the file, still attached

    @property
    def empty(self) -> bool:
        return not self.changed

    def summary(self) -> dict[str, Any]:
        return {
            "changed": list(self.changed),
            "peers_added": [str(p.address) for p in self.peers_added],
            "peers_removed": [str(p.address) for p in self.peers_removed],
            "peers_reset": [str(p.address) for p in self.peers_changed],
            "bfd_rekeyed": [str(p.address) for p in self.bfd_rekeyed],
            "ranges_changed": self.ranges_changed,
            "routes_rejudged": self.policy_changed,
            "exports_resent": self.export_changed,
            "workloads_added": list(self.workloads_added),
            "workloads_left_attached": list(self.workloads_left),
        }


def _secret_leaves(cfg: NodeConfig) -> dict[str, Any]:
    """Each peer's secrets as hashes of what was read: a password_file rotated in place, or an
    inline password (dumped masked), changes these and nothing else."""
    leaves: dict[str, Any] = {}
    for peer in resolved_peers(cfg):
        md5, bfd = peer.secret_digests()
        leaves[f"peers[{peer.address}].password (contents)"] = md5
        leaves[f"peers[{peer.address}].bfd.auth.password (contents)"] = bfd
    for clients in resolved_ranges(cfg):
        md5, bfd = clients.secret_digests()
        leaves[f"peers[{clients.range}].password (contents)"] = md5
        leaves[f"peers[{clients.range}].bfd.auth.password (contents)"] = bfd
    return leaves


def plan_reload(old: NodeConfig, new: NodeConfig) -> ReloadPlan:
    old_dump, new_dump = old.model_dump(mode="json"), new.model_dump(mode="json")
    before = _leaves(old_dump) | _secret_leaves(old)
    after = _leaves(new_dump) | _secret_leaves(new)
    changed = tuple(sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)))
    refused = tuple(
        f"{path}: {_value(old_dump, path)!r} -> {_value(new_dump, path)!r}"
        for path in NEEDS_RESTART
        if any(c == path or c.startswith(path + ".") for c in changed)
    )
    old_peers = {p.address: p for p in resolved_peers(old)}
    new_peers = {p.address: p for p in resolved_peers(new)}
    old_ids = {w.id for w in old.workloads}
    new_ids = {w.id for w in new.workloads}
    bgp_defaults = [c for c in changed if c in SESSION_DEFAULTS]
    old_ranges = {r.range: (r, r.secret_digests()) for r in resolved_ranges(old)}
    new_ranges = {r.range: (r, r.secret_digests()) for r in resolved_ranges(new)}
    return ReloadPlan(
        refused=refused,
        changed=changed,
        peers_added=tuple(p for a, p in new_peers.items() if a not in old_peers),
        peers_removed=tuple(p for a, p in old_peers.items() if a not in new_peers),
        # a peer's own settings, or the defaults it takes from bgp:, change its session
        peers_changed=tuple(
            p
            for a, p in new_peers.items()
            if a in old_peers
            and (
                _session_settings(old_peers[a]) != _session_settings(p)
                or old_peers[a].secret_digests()[0] != p.secret_digests()[0]  # TCP-MD5 re-keyed
                or bgp_defaults
            )
        ),
        bfd_rekeyed=tuple(
            p
            for a, p in new_peers.items()
            if a in old_peers and old_peers[a].secret_digests()[1] != p.secret_digests()[1]
        ),
        # the speaker works out which clients' sessions that resets (bgp.dynamic)
        ranges_changed=old_ranges != new_ranges or bool(new_ranges and bgp_defaults),
        policy_changed=any(c.startswith(POLICY) for c in changed),
        export_changed=any(c.startswith(EXPORT) for c in changed)
        or any(a in old_peers and old_peers[a].export != p.export for a, p in new_peers.items())
        or any(r in old_ranges and old_ranges[r][0].export != n.export for r, (n, _) in new_ranges.items()),
        workloads_added=tuple(sorted(new_ids - old_ids)),
        workloads_left=tuple(sorted(old_ids - new_ids)),
    )
