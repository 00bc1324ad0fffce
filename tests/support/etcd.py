"""etcd in a lab, as the IPAM tests run it: one member on rr1, and the node config that uses it."""

ETCD_ON_RR1 = (
    "etcd --name rr1 --data-dir /tmp/etcd-rr1 --listen-client-urls http://10.0.0.1:2379 "
    "--advertise-client-urls http://10.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 "
    "> /tmp/etcd-rr1.log 2>&1 &"
    " for i in $(seq 100); do etcdctl --endpoints 10.0.0.1:2379 endpoint health >/dev/null 2>&1 && exit 0;"
    " sleep 0.1; done; exit 1"
)
ETCD_IPAM = "ipam: {mode: etcd, etcd: {endpoints: ['10.0.0.1:2379']}, release_after: 3}"
