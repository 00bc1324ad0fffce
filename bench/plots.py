"""Draw PNG plots from the JSON results the benchmarks wrote (matplotlib, no display)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.common import RESULTS


def _load(name: str) -> Any:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _label(axis: Any, xlabel: str, unit: str, title: str) -> None:
    axis.set_xlabel(xlabel)
    axis.set_ylabel(unit)
    axis.set_title(title)
    axis.legend()
    axis.grid(alpha=0.3)


def _save(fig: Any, name: str) -> Path:
    path = RESULTS / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def bulk() -> Path | None:
    data = _load("bulk")
    if not data:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    by_receiver: dict[str, list[dict[str, Any]]] = {}
    for r in data["results"]:
        by_receiver.setdefault(r["receiver"], []).append(r)
    for receiver, rows in by_receiver.items():
        rows.sort(key=lambda r: r["n"])
        sizes = [r["n"] for r in rows]
        left.plot(sizes, [r["install_s"] or 0 for r in rows], marker="o", label=f"{receiver} install")
        left.plot(
            sizes,
            [r.get("withdraw_s") or 0 for r in rows],
            marker="x",
            linestyle="--",
            label=f"{receiver} withdraw",
        )
        right.plot(sizes, [sum(r["rss_kb"].values()) / 1024 for r in rows], marker="o", label=receiver)
    for axis, title, unit in (
        (left, "time until the FIB holds all N", "seconds"),
        (right, "peak RSS of the receiving daemon(s)", "MB"),
    ):
        axis.set_xscale("log")
        _label(axis, "N routes", unit, title)
    return _save(fig, "bulk")


def convergence() -> Path | None:
    data = _load("convergence")
    if not data:
        return None
    fig, axis = plt.subplots(figsize=(10, 4))
    labels, values = [], []
    for m in data["results"]:
        for key in m["summary"]:
            labels.append(f"{m['daemon']}\n{key.removesuffix('_ms')}")
            values.append([t[key] for t in m["trials"] if t.get(key, 0) > 0])  # log scale
    axis.boxplot(values, tick_labels=labels)
    axis.tick_params(axis="x", labelsize=7)
    axis.set_yscale("log")
    axis.set_ylabel("ms (log)")
    axis.set_title("container /32 on host A -> host B's FIB, one reflector")
    axis.grid(alpha=0.3)
    path = RESULTS / "convergence.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def dataplane() -> Path | None:
    data = _load("dataplane")
    if not data:
        return None
    fig, axis = plt.subplots(figsize=(6, 4))
    modes = [r["mode"] for r in data["results"]]
    axis.bar(range(len(modes)), [r["gbit_s"] for r in data["results"]])
    axis.set_xticks(range(len(modes)), modes)
    axis.set_ylabel("Gbit/s")
    axis.set_title("iperf3 TCP between containers on two hosts")
    path = RESULTS / "dataplane.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def failover() -> Path | None:
    data = _load("failover")
    if not data:
        return None
    fig, axis = plt.subplots(figsize=(10, 4))
    labels = [f"{r['daemon']}\n{r['death']}" for r in data["results"]]
    axis.boxplot([r["ms"] for r in data["results"]], tick_labels=labels)
    axis.set_yscale("log")
    axis.set_ylabel("ms until B withdrew A's route (log)")
    axis.set_title("a host's daemon dies: SIGKILL (kill) or SIGSTOP (freeze)")
    axis.grid(alpha=0.3)
    path = RESULTS / "failover.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def stages() -> Path | None:
    """bench.stages' floor per stage against BIRD2's whole receive per route (bench.bulk)."""
    data = _load("stages")
    if not data:
        return None
    fig, axis = plt.subplots(figsize=(11, 3.5))
    phases = ("install", "withdraw")
    names = list(data["install"]["us_per_route"])
    left = [0.0] * len(phases)
    for name in names:
        widths = [data[phase]["us_per_route"][name] for phase in phases]
        axis.barh(phases, widths, left=left, label=name)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    bulk_rows = (_load("bulk") or {}).get("results", [])
    for row in bulk_rows:
        if row["receiver"] == "bird" and row["n"] == data["n"] and row.get("install_s"):
            per_route = row["install_s"] / row["n"] * 1e6
            axis.axvline(
                per_route, color="black", linestyle="--", label=f"BIRD2 install, whole ({per_route:.1f})"
            )
            axis.axvline(1.5 * per_route, color="grey", linestyle=":", label="1.5x BIRD2 (target)")
    axis.set_xlabel("µs per route")
    axis.set_title(f"routed's stages in process, no I/O between them ({data['n']:,} routes)")
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axis.grid(alpha=0.3, axis="x")
    path = RESULTS / "stages.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


RRSCALE_PANELS = (
    ("full_table_s", "every client holds the full table", "seconds", None),
    ("change_last_ms", "one new block at every client (p99)", "ms", "p99"),
    ("rss_mb", "reflector RSS, full table", "MB", None),
    ("cpu_idle_pct", "reflector CPU, keepalives only", "% of a core", None),
    ("cpu_per_change_ms", "reflector CPU per change", "ms", None),
    ("established_s", "every session Established", "seconds", None),
)


def rrscale() -> Path | None:
    data = _load("rrscale")
    if not data:
        return None
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    by_reflector: dict[str, list[dict[str, Any]]] = {}
    for r in data["results"]:
        if "failed" not in r:
            by_reflector.setdefault(r["reflector"], []).append(r)
    for axis, (key, title, unit, part) in zip(axes.flat, RRSCALE_PANELS, strict=True):
        for reflector, rows in by_reflector.items():
            rows = sorted((r for r in rows if key in r), key=lambda r: r["clients"])
            values = [r[key][part] if part else r[key] for r in rows]
            axis.plot([r["clients"] for r in rows], values, marker="o", label=reflector)
        _label(axis, "N clients", unit, title)
    return _save(fig, "rrscale")


def main() -> int:
    for draw in (bulk, convergence, dataplane, failover, stages, rrscale):
        path = draw()
        if path:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
