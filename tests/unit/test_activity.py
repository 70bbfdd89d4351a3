"""Device activity bookkeeping: written in rounds, at most a chunk a batch, newest wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.activity import ActivityBuffer, DeviceActivity

T0 = datetime(2026, 12, 1, 8, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_first_round_is_due_at_once_then_every_interval() -> None:
    clock = Clock()
    buf = ActivityBuffer(every_s=5.0, chunk=10, clock=clock)
    assert buf.take() is None  # nothing noted
    buf.note_message("a", T0, 80, "1.0")
    assert buf.take() == {"a": DeviceActivity(T0, 80, "1.0")}
    buf.note_message("a", T0 + timedelta(seconds=1), 79, None)
    clock.now = 1004.9
    assert buf.take() is None  # the next round is not due yet
    clock.now = 1005.0
    # no firmware this time: None, and touch_devices keeps the stored one (COALESCE)
    assert buf.take() == {"a": DeviceActivity(T0 + timedelta(seconds=1), 79, None)}


def test_a_large_round_is_spread_over_batches_of_at_most_a_chunk() -> None:
    buf = ActivityBuffer(every_s=5.0, chunk=256, clock=Clock())
    for i in range(1000):
        buf.note_message(f"d{i:04d}", T0, None, None)
    sizes = []
    while (taken := buf.take()) is not None:
        sizes.append(len(taken))
    assert sizes == [256, 256, 256, 232]
    assert len(buf) == 0


def test_devices_noted_during_a_round_wait_for_the_next() -> None:
    clock = Clock()
    buf = ActivityBuffer(every_s=5.0, chunk=2, clock=clock)
    for device in "abc":
        buf.note_message(device, T0, None, None)
    assert set(buf.take() or {}) == {"a", "b"}
    buf.note_message("a", T0 + timedelta(seconds=1), None, None)  # taken already: next round
    buf.note_message("c", T0 + timedelta(seconds=2), None, None)  # waiting: updated in place
    assert buf.take() == {"c": DeviceActivity(T0 + timedelta(seconds=2))}
    assert buf.take() is None
    clock.now += 5
    assert buf.take() == {"a": DeviceActivity(T0 + timedelta(seconds=1))}


def test_status_keeps_the_last_message_time_and_a_known_battery() -> None:
    buf = ActivityBuffer(clock=Clock())
    buf.note_message("a", T0, 55, "2.1")
    buf.note_status("a", T0 + timedelta(seconds=3), "offline", None)
    buf.note_message("a", T0 - timedelta(seconds=1), 10, None)  # older message: ignored
    buf.note_status("b", T0, "online", 90)  # a status alone is a message from the device
    assert buf.take() == {
        "a": DeviceActivity(T0, 55, "2.1", "offline", T0 + timedelta(seconds=3)),
        "b": DeviceActivity(T0, 90, None, "online", T0),
    }


def test_chunk_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk"):
        ActivityBuffer(chunk=0)


notes = st.lists(
    st.tuples(
        st.sampled_from(["take", "note", "tick"]),
        st.integers(0, 7),  # device
        st.integers(0, 50),  # seconds after T0
    ),
    max_size=80,
)


@given(notes, st.integers(1, 4))
def test_every_device_is_written_with_its_newest_message_and_no_batch_exceeds_a_chunk(
    steps: list[tuple[str, int, int]], chunk: int
) -> None:
    clock = Clock()
    buf = ActivityBuffer(every_s=5.0, chunk=chunk, clock=clock)
    newest: dict[str, datetime] = {}
    written: dict[str, datetime] = {}

    def take() -> None:
        taken = buf.take()
        if taken is not None:
            assert 1 <= len(taken) <= chunk
            for device, activity in taken.items():
                written[device] = max(
                    written.get(device, activity.last_msg_at), activity.last_msg_at
                )

    for op, device, seconds in steps:
        if op == "note":
            at = T0 + timedelta(seconds=seconds)
            buf.note_message(f"d{device}", at, None, None)
            newest[f"d{device}"] = max(newest.get(f"d{device}", at), at)
        elif op == "tick":
            clock.now += seconds / 10
        else:
            take()
    for _ in range(20):  # rounds keep coming: everything noted is written in the end
        clock.now += 5
        take()
    assert len(buf) == 0
    assert written == newest
