#!/usr/bin/env bash
# Install everything routed needs on a Debian machine, as root; safe to run again.
#   apt: iproute2, ping, bird2, frr (benchmarks), iperf3, tcpdump, etcd (IPAM),
#        podman + runc + CNI plugins + busybox-static (the CNI plugin's tests),
#        docker.io (the Docker plugin's tests), debootstrap (the lab image's base),
#        curl (/metrics in tests), python3-venv
#   .venv: routed (editable) with its test tools
#   /etc/iproute2/rt_protos.d/routed.conf: so `ip route` prints "proto routed"
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs apt packages and writes /etc/iproute2)" >&2
    exit 2
fi

APT_PACKAGES=(iproute2 iputils-ping bird2 frr iperf3 tcpdump procps etcd-server etcd-client
              podman runc containernetworking-plugins busybox-static iptables docker.io
              debootstrap curl python3 python3-venv python3-pip nftables python3-nftables openssl)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# bird2's, frr's, etcd-server's and docker.io's packages start system daemons when installed;
# routed's tests, labs and benchmarks run their own, each in its own namespaces. Only what this
# run installed is stopped: a Docker (or BIRD) the machine already ran is left alone.
declare -A SERVICES=([bird2]="bird" [frr]="frr" [etcd-server]="etcd" [docker.io]="docker.socket docker containerd")
for pkg in "${missing[@]}"; do
    for service in ${SERVICES[$pkg]:-}; do
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
            systemctl disable --now "$service" >/dev/null 2>&1 || true
        fi
    done
done

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "setup.sh: routed needs Python >= 3.11; $("$PYTHON" --version 2>&1) found" >&2
    exit 1
}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

mkdir -p /etc/iproute2/rt_protos.d
printf '201\trouted\n' > /etc/iproute2/rt_protos.d/routed.conf
echo "setup.sh: ready (.venv/bin/routed)"
