#!/usr/bin/env bash
# Install everything, then show routed on one host: two workloads ping each other and the host.
#   bash scripts/demo.sh          run the demo and clean up
#   bash scripts/demo.sh --keep   leave it running to look around (then: bash scripts/demo.sh --down)
set -euo pipefail
cd "$(dirname "$0")/.."

HOST=rt-demo-host
WORKLOADS=(rt-demo-web1 rt-demo-web2)
DIR=/run/routed-demo
ROUTED="$PWD/.venv/bin/routed"

down() {
    if [ -f "$DIR/routed.pid" ]; then
        kill "$(cat "$DIR/routed.pid")" 2>/dev/null || true
        sleep 0.5
    fi
    for ns in "$HOST" "${WORKLOADS[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$DIR"
}

if [ "${1:-}" = "--down" ]; then down; echo "demo removed"; exit 0; fi

bash scripts/setup.sh
down  # a previous run may have been interrupted
if [ "${1:-}" != "--keep" ]; then trap down EXIT; fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

mkdir -p "$DIR"
ip netns add "$HOST"
ip -n "$HOST" link set lo up
# the host's fabric link; its far end stays in the host namespace, unused by this one-host demo
ip -n "$HOST" link add eth1 type veth peer name eth1-peer
ip -n "$HOST" addr add 10.0.0.1/24 dev eth1
ip -n "$HOST" link set eth1 up
ip -n "$HOST" link set eth1-peer up
for ns in "${WORKLOADS[@]}"; do ip netns add "$ns"; done

cat > "$DIR/routed.yaml" <<YAML
name: demo-host
router_id: 10.0.0.1
asn: 64512
fabric: {interface: eth1, address: 10.0.0.1}
pools: [10.65.0.0/24, fd00:65::/64]
api: {socket: $DIR/routed.sock}
state_dir: $DIR/state
YAML

say "routed config check"
"$ROUTED" config check "$DIR/routed.yaml"

say "starting the daemon in $HOST (log: $DIR/routed.log)"
ip netns exec "$HOST" "$ROUTED" run -c "$DIR/routed.yaml" >"$DIR/routed.log" 2>&1 &
echo $! >"$DIR/routed.pid"
for _ in $(seq 100); do [ -S "$DIR/routed.sock" ] && break; sleep 0.1; done

r() { ip netns exec "$HOST" "$ROUTED" "$@" -c "$DIR/routed.yaml"; }
say "routed workload add web1 / web2"
r workload add web1 --netns rt-demo-web1
r workload add web2 --netns rt-demo-web2
say "routed workload list"
r workload list
say "routed routes (the kernel's routes of proto routed)"
r routes
ip -n "$HOST" route show proto routed
ip -n "$HOST" -6 route show proto routed

say "web1 -> web2 (IPv4 and IPv6), web1 -> host, host -> web2"
ip netns exec rt-demo-web1 ping -c 2 -W 1 10.65.0.2
ip netns exec rt-demo-web1 ping -c 2 -W 1 fd00:65::2
ip netns exec rt-demo-web1 ping -c 2 -W 1 10.0.0.1
ip netns exec "$HOST" ping -c 2 -W 1 10.65.0.2

if [ "${1:-}" = "--keep" ]; then
    say "left running; try: ip netns exec $HOST $ROUTED routes -c $DIR/routed.yaml"
    echo "remove it with: bash scripts/demo.sh --down"
else
    say "demo OK; cleaning up"
fi
