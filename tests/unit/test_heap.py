"""The service's cycle-collector settings (homeward.heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from homeward import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    with heap.restored_afterwards():
        yield
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("restored_gc")
def test_settling_freezes_the_start_up_heap_and_collects_less_often() -> None:
    survivors = [[i] for i in range(1000)]  # live for the whole run, like the patients
    heap.settle_after_start()
    assert gc.get_freeze_count() >= len(survivors)
    assert gc.get_threshold() == (
        heap.YOUNG_THRESHOLD,
        heap.MIDDLE_THRESHOLD,
        heap.OLD_THRESHOLD,
    )
    assert all(o is not survivors[0] for o in gc.get_objects())  # out of collection


@pytest.mark.usefixtures("restored_gc")
def test_cycles_made_after_start_up_are_still_collected() -> None:
    heap.settle_after_start()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    del a, b
    assert gc.collect() >= 2
