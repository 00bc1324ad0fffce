"""The garbage collector's settings for a process that holds a full routing table.

CPython's cycle collector runs a young-generation pass every 700 net allocations and
walks every tracked object again in each full pass. Loading 100k routes allocates a few
million objects (prefixes, paths, routes, tuples) that all live on and none of which
form cycles: with the default thresholds the collector was a quarter of the CPU of
decoding 100k routes into the RIB and the FIB view (bench: 0.52-0.64 s of 1.6-2.5 s),
and found nothing to collect. Cycles still get collected, only in larger batches.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between young passes (default 700)
MIDDLE_THRESHOLD = 20  # young passes between middle ones (default 10)
OLD_THRESHOLD = 10  # the default; CPython adds its own 25 % growth rule for full passes


def tune() -> None:
    """Collect in larger batches, and leave what start-up loaded out of every later pass."""
    gc.collect()
    # modules, config and the event loop's machinery stay for the process's life: freezing
    # them keeps each full pass from walking them again
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
