"""Missed readings and silent devices: decisions from stored times and ``now`` only, so a
process restarted in the middle of a grace period decides exactly as one that did not.

A schedule "weight daily by 10:00 (Europe/London), grace 60 minutes" is missed on a day
when no reading of that metric was measured between local midnight and 10:00 + grace,
and it is past 11:00 local time. Deadlines use zoneinfo, so they follow daylight saving.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Schedule:
    rule_id: str
    metric: str
    due: time
    tz: str = "Europe/London"
    grace_min: int = 60


@dataclass(frozen=True, slots=True)
class Miss:
    rule_id: str
    metric: str
    day: date
    deadline: datetime
    last_reading_at: datetime | None


def deadline_on(schedule: Schedule, day: date) -> datetime:
    zone = ZoneInfo(schedule.tz)
    return datetime.combine(day, schedule.due, zone) + timedelta(minutes=schedule.grace_min)


def latest_deadline(schedule: Schedule, now: datetime) -> datetime:
    """The most recent deadline (due time + grace) at or before ``now``."""
    zone = ZoneInfo(schedule.tz)
    today = now.astimezone(zone).date()
    deadline = deadline_on(schedule, today)
    return deadline if deadline <= now else deadline_on(schedule, today - timedelta(days=1))


def missed(schedule: Schedule, last_reading_at: datetime | None, now: datetime) -> Miss | None:
    """The miss for the most recent deadline, or ``None`` when a reading came in time."""
    deadline = latest_deadline(schedule, now)
    zone = ZoneInfo(schedule.tz)
    day = deadline.astimezone(zone).date()
    day_start = datetime.combine(day, time(0), zone)
    if last_reading_at is not None and last_reading_at >= day_start:
        return None
    return Miss(schedule.rule_id, schedule.metric, day, deadline, last_reading_at)


def next_check_at(schedule: Schedule, now: datetime) -> datetime:
    """When the next deadline passes (for the scheduler)."""
    return latest_deadline(schedule, now) + _next_gap(schedule, now)


def _next_gap(schedule: Schedule, now: datetime) -> timedelta:
    last = latest_deadline(schedule, now)
    zone = ZoneInfo(schedule.tz)
    following = deadline_on(schedule, last.astimezone(zone).date() + timedelta(days=1))
    return following - last


@dataclass(frozen=True, slots=True)
class Silence:
    device_id: str
    reason: str
    last_seen: datetime | None


def device_silent(
    device_id: str,
    *,
    last_seen: datetime | None,
    status: str | None,
    expected_cadence_s: float,
    now: datetime,
    factor: float = 2.0,
) -> Silence | None:
    """Offline by its own last will, or silent for longer than ``factor`` × its cadence."""
    if status == "offline":
        return Silence(device_id, "the device reported itself offline", last_seen)
    if last_seen is None:
        return None  # never seen yet: nothing to compare against (adherence covers it)
    silent_s = (now - last_seen).total_seconds()
    if silent_s > factor * expected_cadence_s:
        return Silence(device_id, f"no message for {silent_s / 3600:.1f} h", last_seen)
    return None
