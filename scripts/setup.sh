#!/usr/bin/env bash
# Install what routed needs on a Debian machine, as root; safe to run again.
#   bash scripts/setup.sh demo    only what the demo lab needs: iproute2, ping, sysctl,
#                                 nftables with its Python binding (routed's own table),
#                                 Python with venv, and routed itself in .venv
#   bash scripts/setup.sh         everything the tests, labs and benchmarks use besides:
#        bird2, frr, gobgpd (interop, benchmarks), iperf3, tcpdump, etcd (IPAM), podman + runc + CNI
#        plugins + busybox-static (the CNI plugin's tests), docker.io (the Docker plugin's),
#        containerd (ctr --cni), debootstrap (the lab image's base), curl (/metrics), and the
#        test tools in .venv (pytest, ruff, mypy, ...)
#   bash scripts/setup.sh [demo] --print   what it would install, and nothing else
# Both write /etc/iproute2/rt_protos.d/routed.conf, so `ip route` prints "proto routed".
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full
PRINT=no
for arg in "$@"; do
    case "$arg" in
        demo) MODE=demo ;;
        --print) PRINT=yes ;;
        *) echo "setup.sh: unknown argument $arg (demo, --print)" >&2; exit 2 ;;
    esac
done

DEMO_PACKAGES=(iproute2 iputils-ping procps nftables python3-nftables python3 python3-venv)
TEST_PACKAGES=(python3-pip bird2 frr gobgpd iperf3 tcpdump etcd-server etcd-client podman runc containernetworking-plugins
               busybox-static iptables docker.io containerd debootstrap curl openssl)
if [ "$MODE" = demo ]; then
    APT_PACKAGES=("${DEMO_PACKAGES[@]}")
    PIP_SPEC=.
else
    APT_PACKAGES=("${DEMO_PACKAGES[@]}" "${TEST_PACKAGES[@]}")
    PIP_SPEC='.[dev]'
fi
if [ "$PRINT" = yes ]; then
    echo "apt: ${APT_PACKAGES[*]}"
    echo "pip: $PIP_SPEC"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs apt packages and writes /etc/iproute2)" >&2
    exit 2
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# bird2's, frr's, etcd-server's, docker.io's and containerd's packages start system daemons when
# installed; routed's tests, labs and benchmarks run their own, each in its own namespaces. Only
# what this run installed is stopped: a Docker (or BIRD) the machine already ran is left alone.
declare -A SERVICES=([bird2]="bird" [frr]="frr" [gobgpd]="gobgpd" [etcd-server]="etcd" [docker.io]="docker.socket docker containerd"
                     [containerd]="containerd")
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
# the demo's install is routed alone; the full one adds the test tools (installed once, a
# later demo set-up leaves them)
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$PIP_SPEC"

mkdir -p /etc/iproute2/rt_protos.d
printf '201\trouted\n' > /etc/iproute2/rt_protos.d/routed.conf
echo "setup.sh: ready (.venv/bin/routed)"
