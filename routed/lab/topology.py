"""The subset of containerlab's topology format that the netns runner supports.

Anything outside it is an error naming the key, so a file that works here
means the same thing in containerlab.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from routed.config import read_document
from routed.config.document import FieldProblem, validate_document

REFERENCE = "labs/README.md (supported containerlab keys)"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# Interface and netns names are built as <prefix>-<lab>-<node>; keep them in the kernel's reach.
MAX_NETNS_NAME = 64


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSettings(Strict):
    """Keys a node may carry, and that `defaults:` and `kinds:` may give every node."""

    kind: str | None = None
    image: str | None = None
    binds: tuple[str, ...] = ()
    exec: tuple[str, ...] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str | None) -> str | None:
        if value is not None and value != "linux":
            hint = (
                "; for a shared L2 segment use a linux node that bridges its interfaces (labs/README.md)"
                if value == "bridge"
                else ""
            )
            raise ValueError(f"kind {value!r} is not supported by the netns runner; only linux{hint}")
        return value

    @field_validator("binds")
    @classmethod
    def _binds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for bind in value:
            parts = bind.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
                raise ValueError(f"bind {bind!r} must be SOURCE:/ABSOLUTE/TARGET[:ro|rw]")
            if len(parts) == 3 and parts[2] not in ("ro", "rw"):
                raise ValueError(f"bind {bind!r}: mode must be ro or rw")
        return value


class Link(Strict):
    endpoints: tuple[str, str]

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: tuple[str, str]) -> tuple[str, str]:
        for endpoint in value:
            node, sep, ifname = endpoint.partition(":")
            if not sep or not node or not ifname:
                raise ValueError(f"endpoint {endpoint!r} must be NODE:INTERFACE, e.g. h1:eth1")
        return value


class TopologyBody(Strict):
    kinds: dict[str, NodeSettings] = Field(default_factory=dict)
    defaults: NodeSettings = NodeSettings()
    nodes: dict[str, NodeSettings] = Field(min_length=1)
    links: tuple[Link, ...] = ()


class TopologyFile(Strict):
    name: str
    prefix: str | None = None
    topology: TopologyBody

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"lab name {value!r} must be letters, digits, _ and -")
        return value


@dataclass(frozen=True, slots=True)
class Bind:
    source: Path
    target: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    netns: str
    image: str
    binds: tuple[Bind, ...]
    exec: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    interfaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Endpoint:
    node: str
    ifname: str


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    prefix: str
    path: Path
    nodes: tuple[Node, ...]
    links: tuple[tuple[Endpoint, Endpoint], ...]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def full_name(self) -> str:
        return f"{self.prefix}-{self.name}" if self.prefix else self.name


def _netns_name(prefix: str, lab: str, node: str) -> str:
    # containerlab: clab-<lab>-<node>; prefix "" gives just <node>.
    return f"{prefix}-{lab}-{node}" if prefix else node


def _cross_checks(doc: TopologyFile) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    nodes = doc.topology.nodes
    for name in nodes:
        if not NAME.match(name):
            problems.append(
                FieldProblem(("topology", "nodes", name), f"node name {name!r}: use letters, digits, _ -")
            )
        netns = _netns_name(doc.prefix if doc.prefix is not None else "clab", doc.name, name)
        if len(netns) > MAX_NETNS_NAME:
            problems.append(
                FieldProblem(("topology", "nodes", name), f"{netns!r} is too long for a namespace name")
            )
    used: dict[tuple[str, str], int] = {}
    for index, link in enumerate(doc.topology.links):
        for side, endpoint in enumerate(link.endpoints):
            node, _, ifname = endpoint.partition(":")
            where = ("topology", "links", index, "endpoints", side)
            if node not in nodes:
                problems.append(
                    FieldProblem(where, f"endpoint {endpoint!r} names node {node!r}, which is not in nodes")
                )
            if not IFNAME.match(ifname):
                problems.append(
                    FieldProblem(where, f"interface {ifname!r} must be 1-15 of A-Z a-z 0-9 _ . -")
                )
            if (node, ifname) in used:
                problems.append(
                    FieldProblem(
                        where,
                        f"{endpoint} is already used by links[{used[(node, ifname)]}]; one link per port",
                    )
                )
            used.setdefault((node, ifname), index)
    return problems


def parse_topology(text: str, path: Path, *, name: str | None = None, prefix: str | None = None) -> Topology:
    """Validate a topology; `name`/`prefix` override the file's (as `containerlab deploy --name` does)."""
    doc = validate_document(text, str(path), TopologyFile, reference=REFERENCE, cross_checks=_cross_checks)
    lab = name or doc.name
    chosen_prefix = prefix if prefix is not None else (doc.prefix if doc.prefix is not None else "clab")
    base = path.parent
    body = doc.topology
    interfaces: dict[str, list[str]] = {n: [] for n in body.nodes}
    links = []
    for link in body.links:
        a, b = (Endpoint(*e.split(":", 1)) for e in link.endpoints)
        interfaces[a.node].append(a.ifname)
        interfaces[b.node].append(b.ifname)
        links.append((a, b))
    nodes = []
    for node_name, own in body.nodes.items():
        kind = own.kind or body.defaults.kind or "linux"
        layers = [body.defaults, body.kinds.get(kind, NodeSettings()), own]
        env: dict[str, str] = {}
        labels: dict[str, str] = {}
        binds: list[str] = []
        exec_: tuple[str, ...] = ()
        image = ""
        for layer in layers:
            env.update(layer.env)
            labels.update(layer.labels)
            binds.extend(layer.binds)
            if layer.exec is not None:
                exec_ = layer.exec
            image = layer.image or image
        nodes.append(
            Node(
                name=node_name,
                netns=_netns_name(chosen_prefix, lab, node_name),
                image=image,
                binds=tuple(_bind(b, base) for b in binds),
                exec=exec_,
                env=tuple(sorted(env.items())),
                labels=tuple(sorted(labels.items())),
                interfaces=tuple(interfaces[node_name]),
            )
        )
    return Topology(lab, chosen_prefix, path.resolve(), tuple(nodes), tuple(links))


def _bind(text: str, base: Path) -> Bind:
    parts = text.split(":")
    source = Path(parts[0])
    return Bind(
        source if source.is_absolute() else (base / source).resolve(),
        parts[1],
        len(parts) == 3 and parts[2] == "ro",
    )


def load_topology(path: str | Path, *, name: str | None = None, prefix: str | None = None) -> Topology:
    return parse_topology(read_document(path), Path(path), name=name, prefix=prefix)
