"""The daemon's collector settings: larger young batches, start-up objects frozen out of passes."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from routed import gctune


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_tune_raises_the_young_threshold_and_freezes_what_is_loaded(restored_gc: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    gc.collect()

    gctune.tune()

    assert gc.get_threshold() == (gctune.YOUNG_THRESHOLD, gctune.MIDDLE_THRESHOLD, gctune.OLD_THRESHOLD)
    assert gc.isenabled()
    assert gc.get_freeze_count() > 1000  # this interpreter's modules at least
