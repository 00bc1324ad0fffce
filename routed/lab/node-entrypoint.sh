#!/bin/sh
# The entrypoint of a routed lab node: the container image's ENTRYPOINT, and what
# `routed lab up` starts in each node. NODE_DAEMON (the topology's env:) says what runs:
#   bird    -> BIRD2 with /etc/bird/bird.conf (top-of-rack and spine routers)
#   frr     -> FRR's zebra and bgpd with /etc/frr/frr.conf (benchmarks)
#   gobgp   -> gobgpd with /etc/gobgp/gobgpd.toml (benchmarks)
#   routed  -> routed run -c /etc/routed/routed.yaml
#   none    -> an idle process only (e.g. the fabric switch)
#   unset   -> routed if /etc/routed/routed.yaml exists, else none
# (Not guessed from /etc/bird/bird.conf: Debian's bird2 package ships a default one.)
set -eu

# containerlab attaches a node's links (eth1, eth2, ...; eth0 is its management
# interface) after the container starts; CLAB_INTFS says how many.
wanted="${CLAB_INTFS:-0}"
tries=0
while :; do
    have=$(ls /sys/class/net | grep -c '^eth[1-9]' || true)
    [ "$have" -ge "$wanted" ] && break
    tries=$((tries + 1))
    if [ "$tries" -ge 600 ]; then
        echo "node-entrypoint: only $have of $wanted interfaces after 60 s; starting anyway" >&2
        break
    fi
    sleep 0.1
done

daemon="${NODE_DAEMON:-}"
if [ -z "$daemon" ]; then
    if [ -f /etc/routed/routed.yaml ]; then daemon=routed; else daemon=none; fi
fi
echo "node-entrypoint: node ${CLAB_NODE_NAME:-?} starts $daemon"
case "$daemon" in
    bird)
        mkdir -p /run/bird
        exec bird -f -c /etc/bird/bird.conf -s /run/bird/bird.ctl ;;
    routed)
        exec routed run -c /etc/routed/routed.yaml ;;
    frr)
        # FRR drops to its own user, which the package puts in the vty group
        mkdir -p /run/frr && chown frr:frr /run/frr
        /usr/lib/frr/zebra -d -u frr -g frr -f /etc/frr/frr.conf -i /run/frr/zebra.pid
        exec /usr/lib/frr/bgpd -u frr -g frr -f /etc/frr/frr.conf -i /run/frr/bgpd.pid ;;
    gobgp)
        exec gobgpd -f /etc/gobgp/gobgpd.toml -t toml -l warn --api-hosts 127.0.0.1:50051 ;;
    none)
        exec sleep infinity ;;
    *)
        echo "node-entrypoint: NODE_DAEMON=$daemon is not bird, frr, gobgp, routed or none" >&2
        exit 2 ;;
esac
