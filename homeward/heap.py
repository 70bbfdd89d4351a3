"""The cycle collector's settings for a long-running service process.

Ingest allocates a dozen small objects per message and holds thousands of them while a
batch is in flight. With CPython's default settings the cycle collector then ran every
few hundred messages and, every tenth time, walked the whole heap — every patient the
rule engine had loaded — taking a fifth of the process's time in a drain (measured in
docs/performance.md). Almost all of that memory is freed by reference counting anyway.

So once start-up has loaded what lives for the whole run, that heap is frozen out of
collection, and young collections wait for more allocations: each pause stays short (a
few milliseconds for 20,000 objects on the benchmark machine) and rare.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 20_000  # allocations (net) before a young collection; CPython's is 700
MIDDLE_THRESHOLD = 20  # young collections before a middle one; CPython's is 10
OLD_THRESHOLD = 50  # middle collections before a full one; CPython's is 10


def settle_after_start() -> None:
    """Collect once, move everything that survived start-up out of future collections,
    and collect less often. Call it once, after the service has warmed up; only in a
    process that runs the service (the settings are per process)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    log.info("start-up heap frozen: %d objects out of collection", gc.get_freeze_count())


@contextlib.contextmanager
def restored_afterwards() -> Iterator[None]:
    """Give the process its collector settings back afterwards: the benchmark runs the
    service and its references in one process, and the references must run with
    Python's defaults, as they would in a process of their own."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
