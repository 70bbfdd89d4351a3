"""Missed readings and silent devices: decisions from stored times and ``now`` only, so a
process restarted at any moment — even in the middle of a grace period — decides exactly
as one that kept running, and a scheduler can be set for the exact next deadline.

A schedule "weight daily by 10:00 Europe/London, grace 60 minutes" means, for each local
day d:

* the **reading window** opens at local midnight of d;
* the **due time** is 10:00 local time on d, converted to an instant with ``zoneinfo``
  (so it follows daylight saving: 09:00 UTC in summer, 10:00 UTC in winter). A due time
  that does not exist that day (clocks go forward) is the same instant as one hour later
  on the clock; one that happens twice (clocks go back) is the first;
* the **deadline** is the due time plus the grace period (elapsed minutes);
* the day is **missed** when the deadline has passed and no reading of the metric was
  measured since the window opened. A reading after the deadline ends the miss (a
  recomputation then returns ``None``); the alert raised at the deadline stays until a
  person resolves it.

Only the most recent deadline is judged, from the time of the last reading alone: a check
runs at every deadline (:func:`next_check_at`), and each earlier day was judged at its own.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from alerts.rules.types import Priority, RuleHit


@dataclass(frozen=True, slots=True)
class Schedule:
    rule_id: str
    metric: str
    due: time  # local wall-clock time, without a zone
    tz: str = "Europe/London"
    grace_min: int = 60

    def __post_init__(self) -> None:
        if self.due.tzinfo is not None:
            raise ValueError(f"{self.rule_id}: the due time is local: give the zone in tz")
        if not 0 <= self.grace_min <= 24 * 60:
            raise ValueError(f"{self.rule_id}: grace must be 0 to 1440 minutes")
        ZoneInfo(self.tz)  # an unknown zone fails here, not at the first deadline


@dataclass(frozen=True, slots=True)
class AdherenceMiss:
    rule_id: str
    metric: str
    day: date  # the local day that was missed
    deadline: datetime  # UTC: due time + grace
    last_reading_at: datetime | None
    due_at: datetime | None = None  # UTC: the due time itself
    tz: str = "Europe/London"  # the schedule's zone, for the message

    def hit(self) -> RuleHit:
        """The technical alert for this miss (one per schedule, moved on each day)."""
        local = self.deadline.astimezone(ZoneInfo(self.tz))
        due = (self.due_at or self.deadline).astimezone(ZoneInfo(self.tz))
        return RuleHit(
            rule_id=self.rule_id,
            kind="missed",
            metric=self.metric,
            priority=Priority.TECHNICAL,
            value=None,
            measured_at=self.deadline,
            message=(
                f"no {self.metric.replace('_', ' ')} reading by {due:%H:%M} on {self.day:%a %d %b}"
                f" (checked at {local:%H:%M}); it may mean the patient is unwell"
            ),
            details={
                "day": self.day.isoformat(),
                "last_reading_at": self.last_reading_at.isoformat()
                if self.last_reading_at
                else None,
            },
        )


Miss = AdherenceMiss  # the name used by alerts.adherence


def _utc(when: datetime, what: str) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"{what} needs a time zone")
    return when.astimezone(UTC)


def window_opens(schedule: Schedule, day: date) -> datetime:
    """Local midnight of ``day``, as a UTC instant."""
    return datetime.combine(day, time(0), ZoneInfo(schedule.tz)).astimezone(UTC)


def due_on(schedule: Schedule, day: date) -> datetime:
    """The due time on ``day``, as a UTC instant."""
    return datetime.combine(day, schedule.due, ZoneInfo(schedule.tz)).astimezone(UTC)


def deadline_on(schedule: Schedule, day: date) -> datetime:
    """Due time plus grace on ``day``, as a UTC instant."""
    return due_on(schedule, day) + timedelta(minutes=schedule.grace_min)


def latest_deadline(schedule: Schedule, now: datetime) -> tuple[date, datetime]:
    """The local day and deadline of the most recent deadline at or before ``now``."""
    now_utc = _utc(now, "now")
    today = now_utc.astimezone(ZoneInfo(schedule.tz)).date()
    for back in range(3):  # grace ≤ 24 h: the deadline of two days ago has always passed
        day = today - timedelta(days=back)
        deadline = deadline_on(schedule, day)
        if deadline <= now_utc:
            return day, deadline
    raise AssertionError("unreachable: a deadline two local days back has passed")


def next_check_at(schedule: Schedule, now: datetime) -> datetime:
    """The first deadline strictly after ``now`` (UTC): when to run the next check."""
    now_utc = _utc(now, "now")
    today = now_utc.astimezone(ZoneInfo(schedule.tz)).date()
    for ahead in (-1, 0, 1):
        deadline = deadline_on(schedule, today + timedelta(days=ahead))
        if deadline > now_utc:
            return deadline
    raise AssertionError("unreachable: tomorrow's deadline is after now")


@functools.lru_cache(maxsize=256)
def _judged_day(schedule: Schedule, now: datetime) -> tuple[date, datetime, datetime, datetime]:
    """The day judged at ``now``, its deadline, window opening and due time: the same for
    every patient on this schedule, so a pass over thousands computes it once."""
    day, deadline = latest_deadline(schedule, now)
    return day, deadline, window_opens(schedule, day), due_on(schedule, day)


def due_missed_readings(
    schedule: Schedule,
    last_reading_at: datetime | None,
    now: datetime,
    *,
    since: datetime | None = None,
) -> AdherenceMiss | None:
    """The miss for the most recent deadline at or before ``now``, or ``None`` when a
    reading was measured since that day's window opened. ``last_reading_at`` is the
    newest stored reading of the metric measured at or before ``now``. Deadlines at or
    before ``since`` (when the schedule started) are never missed."""
    day, deadline, opens, due = _judged_day(schedule, now)
    if since is not None and deadline <= _utc(since, "since"):
        return None
    if last_reading_at is not None and _utc(last_reading_at, "last_reading_at") >= opens:
        return None
    return AdherenceMiss(
        schedule.rule_id, schedule.metric, day, deadline, last_reading_at, due, schedule.tz
    )


missed = due_missed_readings  # the name used by alerts.adherence


@dataclass(frozen=True, slots=True)
class DeviceSilence:
    device_id: str
    reason: str
    last_seen: datetime | None
    silent_s: float | None = None

    def hit(self, now: datetime) -> RuleHit:
        """The technical alert: the device, not the patient, needs attention first."""
        return RuleHit(
            rule_id=f"device_silent:{self.device_id}",
            kind="device",
            metric=None,
            priority=Priority.TECHNICAL,
            value=self.silent_s,
            measured_at=self.last_seen or now,
            message=f"device {self.device_id}: {self.reason}",
            details={"device_id": self.device_id, "silent_s": self.silent_s},
        )


Silence = DeviceSilence  # the name used by alerts.adherence


def device_silent(
    device_id: str,
    *,
    last_seen: datetime | None,
    status: str | None,
    expected_cadence_s: float,
    now: datetime,
    factor: float = 2.0,
    bound_at: datetime | None = None,
) -> DeviceSilence | None:
    """Offline by its own last will (``status == "offline"``), or silent for longer than
    ``factor`` × its expected cadence since it was last seen — or, never seen, since it was
    bound to the patient (``bound_at``). A device never seen and without ``bound_at`` has
    nothing to be compared with: ``None`` (the missed-reading rule covers the patient)."""
    if not (expected_cadence_s > 0 and factor >= 1):
        raise ValueError("expected cadence must be positive and the factor at least 1")
    if status == "offline":
        silent = None if last_seen is None else (now - last_seen).total_seconds()
        return DeviceSilence(device_id, "the device reported itself offline", last_seen, silent)
    reference = last_seen or bound_at
    if reference is None:
        return None
    silent_s = (_utc(now, "now") - _utc(reference, "last_seen")).total_seconds()
    if silent_s <= factor * expected_cadence_s:
        return None
    hours = f"{silent_s / 3600:.1f} h"
    reason = f"no message for {hours}" if last_seen else f"never heard from, {hours} after set-up"
    return DeviceSilence(device_id, reason, last_seen, silent_s)
