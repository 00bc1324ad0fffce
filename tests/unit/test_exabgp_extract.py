"""bgp.exabgp.manypeers.linear_extract_neighbors answers as ExaBGP's own extract_neighbors
does, in one walk of the line, and returns where ExaBGP's never does (docs/upstream/exabgp/0012)."""

from __future__ import annotations

import sys
from typing import Any

from exabgp.reactor.api.command import limit  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st


def released_limit() -> Any:
    """limit.py as ExaBGP ships it, loaded afresh (the launcher's patches replace its functions
    in the imported module when a test applies them)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("limit_as_released", limit.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORDS = st.sampled_from(
    [
        *("neighbor", "10.1.0.1", "10.1.0.2", ",", "local-as", "64512", "peer-as", "router-id"),
        *("local-ip", "family-allowed", "in-open", "announce", "withdraw", "attributes", "next-hop"),
        *("eor", "teardown", "2", "nlri", "10.65.1.0/26", "", "*", "route", "ipv4", "unicast"),
    ]
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(WORDS, max_size=14), st.booleans())
def test_the_linear_extraction_answers_as_exabgps_own(words: list[str], selector_first: bool) -> None:
    from bgp.exabgp.manypeers import linear_extract_neighbors

    original = released_limit().extract_neighbors
    command = " ".join((["neighbor", "10.1.0.9"] if selector_first else []) + words)
    ours = linear_extract_neighbors(command)
    try:
        theirs = bounded(original, command)
    except Hung:  # ExaBGP's own never returns: ours says the line has no command
        keys = {"neighbor", "local-ip", "local-as", "peer-as", "router-id", "family-allowed"}
        assert ours[1] == "" and ours[0] and command.split(" ")[-2] in keys
        return
    assert ours == theirs


class Hung(Exception):
    pass


def bounded(function: Any, *args: Any) -> Any:
    """function(*args), or Hung after 10,000 lines of it (ExaBGP's extract_neighbors never
    returns for a line that ends in a selector's pair)."""
    lines = [0]

    def trace(frame: Any, what: str, arg: Any) -> Any:
        if what == "line":
            lines[0] += 1
            if lines[0] > 10_000:
                raise Hung
        return trace

    sys.settrace(trace)
    try:
        return function(*args)
    finally:
        sys.settrace(None)


def test_the_linear_extraction_of_a_thousand_selectors() -> None:
    from bgp.exabgp.manypeers import linear_extract_neighbors

    selectors = " , ".join(f"neighbor 10.1.{i // 250}.{i % 250} local-as 64512" for i in range(1000))
    command = f"{selectors} announce attributes next-hop 10.0.0.11 origin igp nlri 10.65.1.0/26"
    extracted = linear_extract_neighbors(command)
    assert extracted == released_limit().extract_neighbors(command)
    assert len(extracted[0]) == 1000
    assert extracted[1] == "announce attributes next-hop 10.0.0.11 origin igp nlri 10.65.1.0/26"
