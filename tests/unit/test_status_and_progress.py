"""Status messages validated like readings; the ingest watchdog's bookkeeping."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeward.domain import Rejection, RejectReason
from ingest.progress import ProgressWatch
from ingest.status import StatusUpdate, parse_status_message

ROOT = "homeward/v1"
TOPIC = f"{ROOT}/devices/ox-1/status"


def parse(payload: bytes, topic: str = TOPIC) -> StatusUpdate | Rejection | None:
    return parse_status_message(topic, payload, ROOT)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"online", StatusUpdate("ox-1", "online")),
        (b" OFFLINE\n", StatusUpdate("ox-1", "offline")),
        (b'{"status": "online", "battery": 80}', StatusUpdate("ox-1", "online", 80.0)),
        (b'{"status": "offline", "battery": 1e-300}', StatusUpdate("ox-1", "offline", 0.0)),
        (b"", None),  # a retained status cleared: nothing to record
    ],
)
def test_good_status(payload: bytes, expected: StatusUpdate | None) -> None:
    assert parse(payload) == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (orjson.dumps({"status": "online", "battery": 1e300}), RejectReason.SCHEMA),
        (orjson.dumps({"status": "online", "battery": -0.1}), RejectReason.SCHEMA),
        (orjson.dumps({"status": "online", "battery": "80"}), RejectReason.SCHEMA),
        (orjson.dumps({"status": "online", "battery": False}), RejectReason.SCHEMA),
        (orjson.dumps({"status": "online", "firmware": "1"}), RejectReason.SCHEMA),
        (orjson.dumps({"battery": 50}), RejectReason.SCHEMA),
        (orjson.dumps({"status": "ONLINE"}), RejectReason.SCHEMA),
        (b"[]", RejectReason.SCHEMA),
        (b"1e999", RejectReason.MALFORMED_JSON),
        (b"asleep", RejectReason.MALFORMED_JSON),
        (b"\xff", RejectReason.NOT_UTF8),
        (b"x" * 1025, RejectReason.OVERSIZED),
    ],
)
def test_bad_status_is_rejected_with_the_device(payload: bytes, reason: RejectReason) -> None:
    parsed = parse(payload)
    assert isinstance(parsed, Rejection)
    assert parsed.reason is reason, parsed.detail
    assert parsed.device_id == "ox-1"


@pytest.mark.parametrize("topic", [f"{ROOT}/devices/a/b/status", f"{ROOT}/devices/+/status"])
def test_a_status_on_a_bad_topic_is_rejected(topic: str) -> None:
    parsed = parse(b"online", topic)
    assert isinstance(parsed, Rejection)
    assert parsed.reason is RejectReason.BAD_TOPIC


@given(st.binary(max_size=2048))
def test_any_bytes_are_an_update_a_rejection_or_a_clear(payload: bytes) -> None:
    parsed = parse(payload)
    assert parsed is None or isinstance(parsed, StatusUpdate | Rejection)
    if isinstance(parsed, StatusUpdate):
        assert parsed.battery is None or 0 <= parsed.battery <= 100


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_waiting_without_a_commit_is_a_stall() -> None:
    clock = Clock()
    watch = ProgressWatch(30.0, clock)
    assert watch.read(0).stalled is False
    clock.now += 1000  # idle for long: not a stall
    watch.work_arrived()
    clock.now += 30
    assert watch.read(1).stalled is False
    clock.now += 0.5
    progress = watch.read(1)
    assert progress.stalled is True
    assert progress.waiting_for_s == 30.5
    assert progress.last_commit_age_s is None
    watch.committed(still_waiting=True)  # the clock restarts from the commit
    clock.now += 10
    assert watch.read(5).stalled is False
    assert watch.read(5).last_commit_age_s == 10
    watch.committed(still_waiting=False)
    clock.now += 100
    assert watch.read(0).stalled is False
    watch.work_arrived()
    watch.idle()  # the queue was dropped (a reconnect)
    assert watch.read(0).waiting_for_s == 0
