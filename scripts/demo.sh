#!/usr/bin/env bash
# Install what it needs (scripts/setup.sh demo), then bring up the quickstart lab (1 route reflector, 3 hosts,
# 2 containers per host, a router and an "outside" node beyond it) as network namespaces and
# show it working. No Docker needed.
#   bash scripts/demo.sh          set up, (re)build the lab, show it, leave it up
#   bash scripts/demo.sh --down   tear the lab down
set -euo pipefail
cd "$(dirname "$0")/.."

LAB=labs/quickstart.clab.yml
ROUTED="$PWD/.venv/bin/routed"

if [ "${1:-}" = "--down" ]; then
    "$ROUTED" lab down "$LAB"
    exit 0
fi

bash scripts/setup.sh demo
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "routed lab up $LAB"
"$ROUTED" lab down "$LAB" >/dev/null   # a previous demo may still be up
"$ROUTED" lab up "$LAB"

say "waiting for BGP: h1 learns h2's and h3's containers through the reflector rr1"
for _ in $(seq 150); do
    # route get, not show: h3's containers arrive as its block, 10.65.3.0/26, not as /32s
    "$ROUTED" lab exec "$LAB" h1 -- ip route get 10.65.3.2 2>/dev/null | grep -q via && break
    sleep 0.2
done

say "routed lab exec $LAB h1 -- routed workload list"
"$ROUTED" lab exec "$LAB" h1 -- routed workload list
say "routed lab exec $LAB h1 -- routed routes"
"$ROUTED" lab exec "$LAB" h1 -- routed routes
say "h1's container web1 (10.65.1.1) pings its neighbour web2 (10.65.1.2) through the host"
"$ROUTED" lab exec "$LAB" h1 -- ip netns exec web1 ping -c 2 -W 1 10.65.1.2
say "h1's web1 (10.65.1.1) pings h3's web2 (10.65.3.2): routed, no encapsulation"
"$ROUTED" lab exec "$LAB" h1 -- ip netns exec web1 ping -c 3 -W 1 10.65.3.2
say "h2's web1 pings h1's web2"
"$ROUTED" lab exec "$LAB" h2 -- ip netns exec web1 ping -c 2 -W 1 10.65.1.2

say "h1's web1 pings the outside node 10.200.0.2, beyond a router (gw) that knows nothing of the pools"
"$ROUTED" lab exec "$LAB" h1 -- ip netns exec web1 ping -c 3 -W 1 10.200.0.2
say "it went out NATed to h1's own address (nat_outgoing: on by default for IPv4 pools)"
"$ROUTED" lab exec "$LAB" h1 -- routed status | grep -E '^(nat outgoing|mtu):'
"$ROUTED" lab exec "$LAB" h1 -- nft list chain inet routed nat_outgoing

say "the lab is up; look around:"
cat <<EOF
  $ROUTED lab inspect $LAB
  $ROUTED lab exec $LAB h2 -- routed routes
  $ROUTED lab exec $LAB h2 -- ip route
  $ROUTED lab exec $LAB h3 -- ip netns exec web1 ping 10.65.3.2
tear it down with:
  bash scripts/demo.sh --down      (or: $ROUTED lab down $LAB)
EOF
