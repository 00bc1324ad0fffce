# The image the lab topologies name (image: routed:latest), for containerlab on a machine with Docker:
#   docker build -t routed:latest .
#   containerlab deploy -t labs/quickstart.clab.yml
# One image for every node: routed hosts and reflectors, BIRD2 top-of-rack/spine routers,
# and the bridging fabric switch; routed/lab/node-entrypoint.sh starts what the node needs.
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv iproute2 iputils-ping bird2 procps tcpdump iperf3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY routed ./routed
COPY bgp ./bgp
RUN python3 -m venv /opt/routed \
 && /opt/routed/bin/pip install --no-cache-dir . \
 && ln -s /opt/routed/bin/routed /usr/local/bin/routed \
 && mkdir -p /etc/iproute2/rt_protos.d \
 && printf '201\trouted\n' > /etc/iproute2/rt_protos.d/routed.conf

COPY routed/lab/node-entrypoint.sh /usr/local/bin/node-entrypoint
WORKDIR /
ENTRYPOINT ["/bin/sh", "/usr/local/bin/node-entrypoint"]
