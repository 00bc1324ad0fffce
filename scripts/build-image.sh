#!/usr/bin/env bash
# Build the lab node image (default tag routed:latest) from this checkout, with the Docker
# engine the environment points at (DOCKER_HOST, else the system's). As root; safe to rerun.
#   scripts/build-image.sh [TAG]
# Works without a registry, and without PyPI inside builds:
# - debian:bookworm-slim, when the engine has none and cannot pull one, is made with
#   debootstrap from the Debian mirror apt uses (cached in /var/cache/routed);
# - routed and its dependencies are built as wheels here, and the image installs those.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-routed:latest}"
base=debian:bookworm-slim
cache=/var/cache/routed
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python

scratch=$(mktemp -d /tmp/routed-image.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

if ! docker image inspect "$base" >/dev/null 2>&1 && ! timeout 60 docker pull -q "$base" >/dev/null 2>&1; then
    tar="$cache/bookworm-minbase.tar"
    if [ ! -s "$tar" ]; then
        command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
        mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
        echo "build-image: making $base with debootstrap from ${mirror:=http://deb.debian.org/debian}"
        debootstrap --variant=minbase bookworm "$scratch/rootfs" "$mirror" >/dev/null
        mkdir -p "$cache"
        tar -C "$scratch/rootfs" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
        rm -rf "$scratch/rootfs"
    fi
    docker import "$tar" "$base" >/dev/null
fi

# the build context: what the Dockerfile copies, plus the wheels
mkdir -p "$scratch/context"
cp -r Dockerfile .dockerignore pyproject.toml README.md routed bgp "$scratch/context/"
find "$scratch/context" -name __pycache__ -prune -exec rm -rf {} +
"$python" -m pip wheel -q --disable-pip-version-check -w "$scratch/context/wheels" . 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
# (the legacy builder's deprecation notice is the only thing filtered out)
docker build -q --network host -t "$tag" "$scratch/context" 2>&1 >/dev/null \
    | { grep -v -E "legacy builder|buildx|^ *$" || true; } >&2
echo "build-image: built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1e6}'))"
