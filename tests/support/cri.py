"""A CRI client of the few calls a kubelet makes to start and end a pod's sandbox, for driving
containerd's CRI plugin without a kubelet (Debian 12 packages no crictl). The CRI is gRPC with
protobuf messages (k8s.io/cri-api, runtime.v1); the handful of fields used here are encoded by
hand, so no generated code is needed: grpcio sends and receives the bytes.

    python -m tests.support.cri SOCKET run NAME      -> {"id": ..., "ip": ...}
    python -m tests.support.cri SOCKET status ID     -> {"ip": ..., "ready": true}
    python -m tests.support.cri SOCKET stop ID | remove ID
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

SERVICE = "/runtime.v1.RuntimeService/"


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes, embedded message)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def text(number: int, value: str) -> bytes:
    return field(number, value.encode())


def fields(message: bytes) -> dict[int, list[Any]]:
    """A message's fields by number: ints for varints, bytes for length-delimited ones."""
    found: dict[int, list[Any]] = {}
    at = 0
    while at < len(message):
        key, at = _read_varint(message, at)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, at = _read_varint(message, at)
        elif kind == 2:
            size, at = _read_varint(message, at)
            value, at = message[at : at + size], at + size
        elif kind in (1, 5):
            width = 8 if kind == 1 else 4
            value, at = message[at : at + width], at + width
        else:
            raise ValueError(f"wire type {kind} at {at}")
        found.setdefault(number, []).append(value)
    return found


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def sandbox_config(name: str, namespace: str = "default") -> bytes:
    """PodSandboxConfig: metadata {name 1, uid 2, namespace 3}, hostname 2, log_directory 3."""
    metadata = text(1, name) + text(2, str(uuid.uuid4())) + text(3, namespace)
    return field(1, metadata) + text(2, name) + text(3, f"/tmp/cri-logs/{name}")


def call(socket: str, method: str, request: bytes, timeout: float = 60) -> bytes:
    import grpc

    with grpc.insecure_channel(f"unix://{socket}") as channel:
        return bytes(channel.unary_unary(SERVICE + method)(request, timeout=timeout))


def run(socket: str, name: str) -> dict[str, Any]:
    answer = fields(call(socket, "RunPodSandbox", field(1, sandbox_config(name))))
    sandbox = answer[1][0].decode()
    return {"id": sandbox, **status(socket, sandbox)}


def status(socket: str, sandbox: str) -> dict[str, Any]:
    """PodSandboxStatusResponse: status 1 {state 3 (0: ready), network 5 {ip 1}}."""
    answer = fields(call(socket, "PodSandboxStatus", text(1, sandbox)))
    found = fields(answer[1][0])
    network = fields(found[5][0]) if 5 in found else {}
    return {"ip": network[1][0].decode() if 1 in network else None, "ready": found.get(3, [0])[0] == 0}


def main(argv: list[str]) -> int:
    socket, command, argument = argv
    if command == "run":
        out: Any = run(socket, argument)
    elif command == "status":
        out = status(socket, argument)
    elif command in ("stop", "remove"):
        call(socket, "StopPodSandbox" if command == "stop" else "RemovePodSandbox", text(1, argument))
        out = {}
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
