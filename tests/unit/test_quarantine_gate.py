"""What quarantine keeps of a rejected payload, and how many rows a device may add."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from ingest.quarantine_gate import MAX_TRACKED, QuarantineGate, kept_payload


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_kept_payload_is_a_prefix_with_the_whole_size_and_hash() -> None:
    payload = b"x" * 1_000_000
    kept = kept_payload(payload, 4096)
    assert kept.prefix == payload[:4096]
    assert kept.size == 1_000_000
    assert kept.sha256 == hashlib.sha256(payload).digest()
    assert kept_payload(b"short", 4096).prefix == b"short"


def test_a_device_gets_its_burst_then_its_rate() -> None:
    clock = Clock()
    gate = QuarantineGate(per_minute=6, keep_bytes=10, clock=clock)
    assert [gate.admit("a", n) for n in range(8)] == [True] * 6 + [False] * 2
    assert gate.admit("b", 100)  # another device has its own allowance
    clock.now += 10  # one more row per 10 s
    assert gate.admit("a", 8)
    assert not gate.admit("a", 9)
    assert gate.stats.rate_limited == 3
    assert gate.stats.top() == {"a": 3}


def test_a_message_is_judged_once_until_its_batch_settles() -> None:
    gate = QuarantineGate(per_minute=1, keep_bytes=10, clock=Clock())
    assert gate.admit("a", 1)
    assert not gate.admit("a", 2)
    for _ in range(3):  # the batch written again (a retry, the halves of a split)
        assert gate.admit("a", 1)
        assert not gate.admit("a", 2)
    assert (gate.stats.kept, gate.stats.rate_limited) == (1, 1)
    gate.settle([1, 2])
    assert not gate.admit("a", 1)  # a new message with a reused token: judged afresh


def test_the_buckets_it_tracks_are_bounded() -> None:
    clock = Clock()
    gate = QuarantineGate(per_minute=1, keep_bytes=10, clock=clock)
    for n in range(MAX_TRACKED + 50):
        gate.admit(f"d{n}", n)
    assert len(gate._buckets) <= MAX_TRACKED


@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 30)), max_size=200))
def test_no_device_gets_more_than_burst_plus_rate(steps: list[tuple[str, float]]) -> None:
    clock = Clock()
    gate = QuarantineGate(per_minute=6, keep_bytes=10, clock=clock)
    admitted = {"a": 0, "b": 0, "c": 0}
    for n, (device, wait) in enumerate(steps):
        clock.now += wait
        admitted[device] += gate.admit(device, n)
    for count in admitted.values():
        assert count <= 6 + clock.now * 6 / 60 + 1e-9
