"""Session protection against real BGP speakers: max-prefix with BIRD2 sending 10,000 prefixes
to a limit of 1,000, each action in turn (changed by reload, as an operator would)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_bgp import kernel_routes, status
from tests.lab import Lab, lab_variant, running_lab
from tests.netns import wait_until

FLOOD = 10_000
BIRD_PEER = "  - {address: 10.0.0.31, kind: mesh, description: bird1}\n"


def flood_routes() -> str:
    """10,000 /32s inside the pools, announced by bird1."""
    return "\n".join(f"    route 10.65.{100 + i // 256}.{i % 256}/32 via 10.0.0.31;" for i in range(FLOOD))


def bird_peer(lab: Lab) -> dict[str, Any]:
    return next(p for p in status(lab, "h1")["bgp"]["peers"] if p["address"] == "10.0.0.31")


def from_bird(lab: Lab) -> int:
    return sum(1 for via in kernel_routes(lab, "h1").values() if via == "10.0.0.31")


def reload_with(lab: Lab, config: Any, original: str, limit: str) -> None:
    with open(config, "w") as handle:  # in place: the node sees it through a bind mount
        handle.write(original.replace(BIRD_PEER, BIRD_PEER.replace("}", f", max_prefixes: {limit}}}")))
    result = lab.exec("h1", "routed", "reload", check=False)
    assert result.returncode == 0, result


@pytest.mark.long(90)
def test_max_prefixes_warn_teardown_and_drop_against_bird() -> None:
    static = (
        "    route 10.65.9.1/32 via 10.0.0.31;    # legitimate: inside the pools\n"
        "    route 10.65.1.1/32 via 10.0.0.31;    # hijack: h1's own workload\n"
        "    route 10.99.0.0/24 via 10.0.0.31;    # outside the pools\n"
        "    route 0.0.0.0/0 via 10.0.0.31;       # default route\n"
    )
    edits = {
        "bird-interop/bird1.conf": [
            (static, flood_routes() + "\n"),
            ("    connect retry time 1;\n", "    connect retry time 1;\n    error wait time 1, 2;\n"),
        ]
    }
    with lab_variant("bird-interop", {}, edits) as topology, running_lab(topology) as lab:
        config = topology.parent / "bird-interop" / "h1.yaml"
        original = config.read_text()

        # warn: everything is kept, the crossing is logged and shown
        reload_with(lab, config, original, "{limit: 1000, action: warn}")
        wait_until(lambda: from_bird(lab), FLOOD, timeout=60, what="h1 installs all 10,000 (warn)")
        peer = bird_peer(lab)
        assert (peer["received"], peer["accepted"], peer["max_prefixes"]["over"]) == (FLOOD, FLOOD, True)
        assert "over max_prefixes 1000 (warn)" in lab.exec("h1", "routed", "status").stdout
        assert "event=bgp_max_prefixes" in lab.log("h1") and "action=warn" in lab.log("h1")

        # teardown: at once on reload (it holds 10,000), Cease 6/1, its routes gone, held down,
        # back after restart_after, and torn down again as soon as it floods again
        reload_with(lab, config, original, "{limit: 1000, action: teardown, restart_after: 5}")
        wait_until(lambda: from_bird(lab), 0, timeout=20, what="bird1's routes withdrawn (teardown)")
        peer = bird_peer(lab)
        assert peer["state"] != "up" and "Cease 6/1" in peer["last_error"], peer
        assert peer["max_prefixes"]["held_down_until"] is not None
        wait_until(
            lambda: (
                "Maximum number of prefixes reached" in lab.birdc("bird1", "show", "protocols", "all", "h1")
            ),
            timeout=10,
            what="BIRD got the Cease",
        )
        wait_until(lambda: lab.log("h1").count("event=bgp_max_prefixes_released"), 1, timeout=20)
        wait_until(lambda: lab.log("h1").count("action=teardown"), 2, timeout=30, what="torn down again")
        assert from_bird(lab) == 0

        # drop: released at once, the session comes back, the first 1,000 are kept
        reload_with(lab, config, original, "{limit: 1000, action: drop}")
        wait_until(lambda: bird_peer(lab)["state"], "up", timeout=30, what="bird1 back (drop)")
        wait_until(lambda: bird_peer(lab)["rejections"].get("max prefixes"), FLOOD - 1000, timeout=60)
        peer = bird_peer(lab)
        assert (peer["received"], peer["accepted"]) == (1000, 1000), peer
        assert from_bird(lab) == 1000
