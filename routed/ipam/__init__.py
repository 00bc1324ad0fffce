"""Which addresses a node's workloads get, and which blocks it owns.

`pools` hands out addresses from the pools with no blocks (ipam mode none), `blocks` is the
block arithmetic, `backends` the three modes behind one interface, `etcd` the datastore.
"""

from routed.ipam.pools import NotInPool, PoolExhausted, allocate, check_requested, pool_of

__all__ = ["NotInPool", "PoolExhausted", "allocate", "check_requested", "pool_of"]
