# The image the lab topologies name (image: routed:latest), for containerlab on a machine with Docker:
#   scripts/build-image.sh            (or, with PyPI reachable from builds: docker build -t routed:latest .)
#   containerlab deploy -t labs/quickstart.clab.yml
# One image for every node: routed hosts and reflectors, BIRD2 top-of-rack/spine routers,
# and the bridging fabric switch; routed/lab/node-entrypoint.sh starts what the node needs.
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv iproute2 iputils-ping bird2 procps tcpdump iperf3 tini \
 && rm -rf /var/lib/apt/lists/*

# wheels/ (made by scripts/build-image.sh on the host) lets the build install without reaching
# PyPI; without it, pip installs routed and its dependencies from the index
COPY . /src
RUN python3 -m venv /opt/routed \
 && if ls /src/wheels/*.whl >/dev/null 2>&1; then \
        /opt/routed/bin/pip install --no-cache-dir --no-index --find-links /src/wheels routed; \
    else \
        /opt/routed/bin/pip install --no-cache-dir /src; \
    fi \
 && ln -s /opt/routed/bin/routed /usr/local/bin/routed \
 && mkdir -p /etc/iproute2/rt_protos.d \
 && printf '201\trouted\n' > /etc/iproute2/rt_protos.d/routed.conf \
 && cp /src/routed/lab/node-entrypoint.sh /usr/local/bin/node-entrypoint \
 && rm -rf /src

# tini as pid 1 reaps what `docker exec` leaves orphaned (containerlab's exec: commands), which
# routed, BIRD or sleep as pid 1 would not
ENTRYPOINT ["/usr/bin/tini", "--", "/bin/sh", "/usr/local/bin/node-entrypoint"]
