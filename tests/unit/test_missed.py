"""Missed readings with an injected clock (grace periods, restarts, daylight saving) and
silent devices."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.rules.missed import (
    AdherenceMiss,
    Schedule,
    deadline_on,
    device_silent,
    due_missed_readings,
    due_on,
    latest_deadline,
    next_check_at,
    window_opens,
)
from alerts.rules.types import Priority

LONDON = ZoneInfo("Europe/London")
WEIGHT = Schedule("missed:body_weight", "body_weight", time(10, 0), "Europe/London", 60)


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    """A London wall-clock time in 2026."""
    return datetime(2026, month, day, hour, minute, tzinfo=LONDON)


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("last", "now", "missed_day"),
    [
        (at(22, 8), at(22, 11, 30), None),  # weighed this morning
        (at(21, 8), at(22, 10, 59), None),  # in today's grace period: yesterday is judged
        (at(21, 8), at(22, 11, 0), 22),  # 10:00 + 60 min has passed: missed
        (None, at(22, 11, 1), 22),  # never weighed
        (at(22, 10, 45), at(22, 12), None),  # after the due time, within grace
        (at(22, 11, 30), at(22, 12), None),  # late: the miss is over (the alert stays)
        (at(22, 0, 0), at(22, 12), None),  # the window opens at local midnight
        (at(21, 23, 59), at(22, 12), 22),
        (at(20, 8), at(22, 9), 21),  # before today's deadline: yesterday was missed
        (at(23, 8), at(22, 12), None),  # a clock ahead of ours: a reading is there
    ],
)
def test_missed_reading(last: datetime | None, now: datetime, missed_day: int | None) -> None:
    miss = due_missed_readings(WEIGHT, last, now)
    if missed_day is None:
        assert miss is None
        return
    assert miss is not None
    assert miss.day.day == missed_day
    assert miss.deadline == at(missed_day, 11)
    assert miss.due_at == at(missed_day, 10)
    assert miss.last_reading_at == last


def test_the_miss_is_a_technical_alert() -> None:
    miss = due_missed_readings(WEIGHT, at(20, 8), at(22, 11, 5))
    assert isinstance(miss, AdherenceMiss)
    hit = miss.hit()
    assert (hit.rule_id, hit.kind, hit.priority, hit.value) == (
        "missed:body_weight",
        "missed",
        Priority.TECHNICAL,
        None,
    )
    assert hit.message.startswith("no body weight reading by 10:00 on Sun 22 Nov")
    assert hit.measured_at == at(22, 11)


def test_a_schedule_that_starts_today_misses_nothing_before_it_started() -> None:
    enrolled = at(22, 11, 30)
    assert due_missed_readings(WEIGHT, None, at(22, 12), since=enrolled) is None
    assert due_missed_readings(WEIGHT, None, at(23, 11, 1), since=enrolled) is not None


def test_next_check_is_the_next_deadline() -> None:
    assert next_check_at(WEIGHT, at(22, 10, 30)) == at(22, 11)
    assert next_check_at(WEIGHT, at(22, 11)) == at(23, 11)  # strictly after now
    assert next_check_at(WEIGHT, at(22, 10, 59)) == at(22, 11)


@given(
    st.integers(0, 60 * 60 - 1),  # restart this many seconds into the grace period
    st.sampled_from([None, at(21, 8), at(22, 9, 59), at(22, 10, 30), at(22, 10, 59)]),
)
def test_a_restart_in_the_middle_of_the_grace_period_decides_the_same(
    restart_s: int, last: datetime | None
) -> None:
    """A process that kept running checks at the deadline; one restarted during the grace
    period schedules its check from ``now`` and recomputes from the stored last reading."""
    running_check = next_check_at(WEIGHT, at(22, 9))
    restarted = at(22, 10) + timedelta(seconds=restart_s)
    # during the grace period only yesterday's deadline can be judged, as before 10:00
    before = due_missed_readings(WEIGHT, last, at(22, 9))
    assert due_missed_readings(WEIGHT, last, restarted) == before
    assert before is None or before.day.day == 21
    restarted_check = next_check_at(WEIGHT, restarted)
    assert restarted_check == running_check == at(22, 11)
    running = due_missed_readings(WEIGHT, last, running_check)
    assert due_missed_readings(WEIGHT, last, restarted_check) == running
    assert (running is not None) is (last is None or last < at(22, 0))


# Clocks go forward on 29 March 2026 and back on 25 October 2026 (Europe/London).
@pytest.mark.parametrize(
    ("month", "day", "deadline_utc"),
    [
        (3, 28, utc(3, 28, 11)),  # GMT
        (3, 29, utc(3, 29, 10)),  # BST from 01:00 UTC: 10:00 local is 09:00 UTC
        (10, 24, utc(10, 24, 10)),
        (10, 25, utc(10, 25, 11)),  # back to GMT
    ],
)
def test_deadlines_follow_daylight_saving(month: int, day: int, deadline_utc: datetime) -> None:
    assert deadline_on(WEIGHT, datetime(2026, month, day).date()) == deadline_utc
    assert next_check_at(WEIGHT, deadline_utc - timedelta(minutes=1)) == deadline_utc


def test_dst_days_are_23_and_25_hours_long() -> None:
    assert next_check_at(WEIGHT, utc(3, 28, 11)) - utc(3, 28, 11) == timedelta(hours=23)
    assert next_check_at(WEIGHT, utc(10, 24, 10)) - utc(10, 24, 10) == timedelta(hours=25)
    # the reading window opens at local midnight: 23:00 UTC the evening before, in summer
    assert window_opens(WEIGHT, datetime(2026, 10, 25).date()) == utc(10, 24, 23)
    assert due_missed_readings(WEIGHT, utc(10, 24, 23, 30), utc(10, 25, 12)) is None
    assert due_missed_readings(WEIGHT, utc(10, 24, 22, 30), utc(10, 25, 12)) is not None


def test_a_due_time_skipped_or_repeated_by_the_clock_change() -> None:
    night = Schedule("missed:spo2", "spo2", time(1, 30), "Europe/London", 0)
    # 01:30 does not exist on 29 March: it is the instant an hour later on the clock
    assert due_on(night, datetime(2026, 3, 29).date()) == utc(3, 29, 1, 30)
    # 01:30 happens twice on 25 October: the first one counts
    assert due_on(night, datetime(2026, 10, 25).date()) == utc(10, 25, 0, 30)


def test_grace_past_midnight() -> None:
    late = Schedule("missed:blood_glucose", "blood_glucose", time(23, 30), "Europe/London", 90)
    # at 00:30 on the 23rd, the deadline of the 22nd (01:00 on the 23rd) has not passed
    day, deadline = latest_deadline(late, at(23, 0, 30))
    assert (day.day, deadline) == (21, at(22, 1))
    assert next_check_at(late, at(23, 0, 30)) == at(23, 1)
    assert due_missed_readings(late, at(22, 23, 45), at(23, 1)) is None
    assert due_missed_readings(late, at(21, 23, 45), at(23, 1)) is not None


ZONES = ["Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]


@given(
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1)),
    st.times(),
    st.integers(0, 24 * 60),
    st.sampled_from(ZONES),
)
def test_deadlines_are_consecutive_and_bracket_now(
    naive_now: datetime, due: time, grace: int, tz: str
) -> None:
    schedule = Schedule("missed:x", "body_weight", due, tz, grace)
    now = naive_now.replace(tzinfo=UTC)
    day, latest = latest_deadline(schedule, now)
    upcoming = next_check_at(schedule, now)
    assert latest <= now < upcoming
    assert latest_deadline(schedule, upcoming) == (day + timedelta(days=1), upcoming)
    assert next_check_at(schedule, latest) == upcoming
    assert timedelta(hours=22) <= upcoming - latest <= timedelta(hours=26)


def test_times_without_a_zone_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        due_missed_readings(WEIGHT, None, datetime(2026, 11, 22, 12))
    with pytest.raises(ValueError, match="time zone"):
        due_missed_readings(WEIGHT, datetime(2026, 11, 22, 8), at(22, 12))


@pytest.mark.parametrize(
    "bad",
    [
        {"grace_min": -1},
        {"grace_min": 24 * 60 + 1},
        {"due": time(10, tzinfo=UTC)},
    ],
)
def test_a_malformed_schedule_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="missed:body_weight"):
        Schedule(**{"rule_id": WEIGHT.rule_id, "metric": "body_weight", "due": time(10), **bad})  # type: ignore[arg-type]


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(Exception, match="Mars"):
        Schedule("missed:x", "body_weight", time(10), "Mars/Olympus_Mons")


# --- device silence ---------------------------------------------------------------------

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
DAY = 86_400.0


@pytest.mark.parametrize(
    ("last_seen", "status", "cadence_s", "bound_at", "silent"),
    [
        (NOW - timedelta(hours=30), "online", DAY, None, False),  # daily scales: 48 h allowed
        (NOW - timedelta(hours=48), "online", DAY, None, False),  # exactly twice: not yet
        (NOW - timedelta(hours=49), "online", DAY, None, True),
        (NOW, "offline", DAY, None, True),  # its last will: offline at once
        (None, "offline", DAY, None, True),
        (NOW - timedelta(minutes=3), None, 120.0, None, False),  # wearable every 2 min
        (NOW - timedelta(minutes=5), None, 120.0, None, True),
        (None, None, DAY, None, False),  # never seen, nothing to compare with
        (None, None, DAY, NOW - timedelta(days=3), True),  # bound three days ago, never heard
        (None, None, DAY, NOW - timedelta(hours=1), False),
        (NOW + timedelta(hours=1), "online", DAY, None, False),  # a clock ahead of ours
    ],
)
def test_device_silence(
    last_seen: datetime | None,
    status: str | None,
    cadence_s: float,
    bound_at: datetime | None,
    silent: bool,
) -> None:
    found = device_silent(
        "sc-1",
        last_seen=last_seen,
        status=status,
        expected_cadence_s=cadence_s,
        now=NOW,
        bound_at=bound_at,
    )
    assert (found is not None) is silent
    if found is not None:
        hit = found.hit(NOW)
        assert (hit.rule_id, hit.priority, hit.kind) == (
            "device_silent:sc-1",
            Priority.TECHNICAL,
            "device",
        )
        assert ("offline" in hit.message) is (status == "offline")


def test_device_silence_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="cadence"):
        device_silent("d", last_seen=NOW, status=None, expected_cadence_s=0, now=NOW)
    with pytest.raises(ValueError, match="factor"):
        device_silent("d", last_seen=NOW, status=None, expected_cadence_s=60, now=NOW, factor=0.5)
