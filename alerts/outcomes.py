"""Outcomes for commissioners, as pure functions over rows (docs/outcomes.md defines every
figure): no clock, no I/O. ``alerts/outcomes_store.py`` fetches the rows
(``alerts/outcomes.sql``); the command line and the API print what :func:`report` returns.

Grouping: an alert counts in the group of the team that had it (``alerts.team_id``, the
patient's team when it was raised), so a patient who moved team mid-period is counted,
for each alert, with the team it was raised for; a patient's
monitored time and reading adherence count in the group of their team now. The period
is whole local days (Europe/London) from ``from`` to ``to`` inclusive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from alerts.alert import Outcome

PRIORITIES = ("red", "amber", "technical")
GroupBy = Literal["team", "locality"]
ALL = "all"
NO_GROUP = "(no team)"
SUPPRESSED = "< 5"
SMALL = 5  # counts of 1 to SMALL - 1 are suppressed
REPORT_TZ = ZoneInfo("Europe/London")
WEEK_S = 7 * 86400.0
EARLIEST, LATEST = date(1970, 1, 1), date(9998, 12, 31)  # what a datetime can bound


@dataclass(frozen=True, slots=True)
class Period:
    """Whole local days ``first`` to ``last`` inclusive, on the report's wall clock."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"the period ends ({self.last}) before it starts ({self.first})")
        if self.first < EARLIEST or self.last > LATEST:
            raise ValueError(f"a period lies between {EARLIEST} and {LATEST}")

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), REPORT_TZ).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """Exclusive: local midnight after the last day (23 or 25 hours on DST days)."""
        return datetime.combine(self.last + timedelta(days=1), time(), REPORT_TZ).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: int
    patient_id: int
    team_id: str | None
    locality: str | None
    priority: str
    opened_at: datetime
    first_ack_at: datetime | None  # the first acknowledgement (a later one may replace it)
    resolved_at: datetime | None
    outcome: str | None
    handled_by_person: bool  # a person acknowledged, snoozed, annotated or resolved it
    steps_planned: int  # escalation steps planned when it was raised
    steps_fired: int  # … of which were sent
    last_fired_at: datetime | None
    first_admission_on: date | None  # the patient's first admission on or after the alert's day


@dataclass(frozen=True, slots=True)
class PatientRow:
    patient_id: int
    team_id: str | None
    locality: str | None
    enrolled_at: datetime
    expected_readings: int  # scheduled readings in the period (see schedule_adherence)
    received_readings: int


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's ``percentile_cont``):
    rank ``p × (n − 1)`` counted from 0 in the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = p * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _minutes(seconds: Iterable[float]) -> dict[str, Any]:
    values = list(seconds)
    median, p90 = percentile(values, 0.5), percentile(values, 0.9)
    return {
        "n": len(values),
        "median_min": None if median is None else round(median / 60, 1),
        "p90_min": None if p90 is None else round(p90 / 60, 1),
    }


def first_response_at(alert: AlertRow) -> datetime | None:
    times = [t for t in (alert.first_ack_at, alert.resolved_at) if t is not None]
    return min(times) if times else None


def reached_no_one(alert: AlertRow) -> bool:
    """No team had it (it reached no queue), or every planned escalation step was sent
    before anyone acknowledged or resolved it (the whole ladder ran unanswered)."""
    if alert.team_id is None:
        return True
    if alert.steps_planned == 0 or alert.steps_fired < alert.steps_planned:
        return False
    response = first_response_at(alert)
    return response is None or (alert.last_fired_at is not None and alert.last_fired_at < response)


def admitted_within(alert: AlertRow, days: int) -> bool:
    """An admission on the alert's local day or in the ``days`` days after it."""
    if alert.first_admission_on is None:
        return False
    alert_day = alert.opened_at.astimezone(REPORT_TZ).date()
    return 0 <= (alert.first_admission_on - alert_day).days <= days


def monitored_seconds(enrolled_at: datetime, period: Period) -> float:
    """Elapsed seconds (UTC arithmetic: a DST day is 23 or 25 hours) monitored in the
    period."""
    start = max(enrolled_at.astimezone(UTC), period.start)
    return max(0.0, (period.end - start).total_seconds())


def schedule_adherence(
    schedules: Iterable[tuple[str, str]],
    reading_days: Mapping[str, frozenset[date]],
    enrolled_at: datetime,
    period: Period,
) -> tuple[int, int]:
    """(expected, received) for one patient: each schedule ``(metric, tz)`` expects one
    reading on each whole local day of the period that began after the patient was
    enrolled; the day counts as received if any reading of that metric was measured on
    it (``reading_days[metric]``, local dates in the schedule's zone), however late."""
    expected = received = 0
    for metric, tz in schedules:
        zone = ZoneInfo(tz)
        got = reading_days.get(metric, frozenset())
        day = period.first
        while day <= period.last:
            if datetime.combine(day, time(), zone) >= enrolled_at:
                expected += 1
                received += day in got
            day += timedelta(days=1)
    return expected, received


def _group(team: str | None, locality: str | None, by: GroupBy) -> str:
    key = team if by == "team" else locality
    return key if key is not None else NO_GROUP


def _figures(
    alerts: Sequence[AlertRow], patients: Sequence[PatientRow], period: Period
) -> dict[str, Any]:
    weeks = sum(monitored_seconds(p.enrolled_at, period) for p in patients) / WEEK_S
    expected = sum(p.expected_readings for p in patients)
    received = sum(p.received_readings for p in patients)

    def rate(count: int) -> float | None:
        return round(count / weeks, 3) if weeks > 0 else None

    raised: dict[str, Any] = {}
    handled: dict[str, Any] = {}
    to_ack: dict[str, Any] = {}
    to_resolve: dict[str, Any] = {}
    for priority in (ALL, *PRIORITIES):
        mine = [a for a in alerts if priority in (ALL, a.priority)]
        by_person = sum(a.handled_by_person for a in mine)
        raised[priority] = {"count": len(mine), "per_patient_week": rate(len(mine))}
        handled[priority] = {"count": by_person, "per_patient_week": rate(by_person)}
        to_ack[priority] = _minutes(
            (a.first_ack_at - a.opened_at).total_seconds() for a in mine if a.first_ack_at
        )
        to_resolve[priority] = _minutes(
            (a.resolved_at - a.opened_at).total_seconds() for a in mine if a.resolved_at
        )
    outcomes = {o.value: 0 for o in Outcome}
    for a in alerts:
        if a.outcome is not None:
            outcomes[a.outcome] = outcomes.get(a.outcome, 0) + 1
    outcomes["unresolved"] = sum(a.resolved_at is None for a in alerts)
    avoided = [a for a in alerts if a.outcome == Outcome.ADMISSION_AVOIDED.value]
    return {
        "patients": len(patients),
        "patient_weeks": round(weeks, 2),
        "alerts": raised,
        "handled_by_a_person": handled,
        "time_to_acknowledge": to_ack,
        "time_to_resolve": to_resolve,
        "outcomes": outcomes,
        "escalated_beyond_first_level": sum(a.steps_fired > 1 for a in alerts),
        "reached_no_one_in_time": sum(reached_no_one(a) for a in alerts),
        "reading_adherence": {
            "expected": expected,
            "received": received,
            "ratio": round(received / expected, 3) if expected else None,
        },
        "admissions": {
            "alerts_followed_by_admission_within_7_days": sum(
                admitted_within(a, 7) for a in alerts
            ),
            "alerts_followed_by_admission_within_30_days": sum(
                admitted_within(a, 30) for a in alerts
            ),
            "admission_avoided_recorded": len(avoided),
            "admission_avoided_then_admitted_within_30_days": sum(
                admitted_within(a, 30) for a in avoided
            ),
        },
    }


def report(
    alerts: Sequence[AlertRow], patients: Sequence[PatientRow], period: Period, by: GroupBy
) -> dict[str, Any]:
    """Every figure per group (and for all groups together, ``"all"``), groups sorted."""
    groups = sorted(
        {_group(a.team_id, a.locality, by) for a in alerts}
        | {_group(p.team_id, p.locality, by) for p in patients}
    )
    rows = [{"group": ALL, **_figures(alerts, patients, period)}]
    for g in groups:
        rows.append(
            {
                "group": g,
                **_figures(
                    [a for a in alerts if _group(a.team_id, a.locality, by) == g],
                    [p for p in patients if _group(p.team_id, p.locality, by) == g],
                    period,
                ),
            }
        )
    return {
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
        "by": by,
        "time_zone": str(REPORT_TZ),
        "groups": rows,
    }


# ---- statistical disclosure control --------------------------------------------------------


def suppress(report_: Mapping[str, Any]) -> dict[str, Any]:
    """The report with small numbers hidden (shown as ``"< 5"``): every count from 1 to 4;
    a rate whose count is hidden; a median and 90th percentile over fewer than 5 alerts;
    and, in a group of fewer than 5 patients, every rate and the adherence ratio."""
    out = dict(report_)
    out["groups"] = [_suppress_group(g) for g in report_["groups"]]
    out["suppressed_below"] = SMALL
    return out


def _small(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < SMALL


def _suppress_group(group: Mapping[str, Any]) -> dict[str, Any]:
    few_patients = group["patients"] < SMALL

    def walk(node: Any, key: str | None) -> Any:
        if not isinstance(node, Mapping):
            return SUPPRESSED if _small(node) else node
        done = {k: walk(v, k) for k, v in node.items()}
        if "per_patient_week" in node and (
            _small(node["count"]) or (few_patients and node["per_patient_week"] is not None)
        ):
            done["per_patient_week"] = SUPPRESSED
        if "median_min" in node and _small(node["n"]):
            done["median_min"] = done["p90_min"] = SUPPRESSED
        if key == "reading_adherence" and few_patients and node["ratio"] is not None:
            done["ratio"] = SUPPRESSED
        return done

    result: dict[str, Any] = walk(group, None)
    result["group"] = group["group"]
    if few_patients:
        result["patient_weeks"] = SUPPRESSED
    return result


def flatten(report_: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per group and figure (``alerts.red.count``), for CSV and tables."""
    rows: list[dict[str, Any]] = []

    def walk(group: str, prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(group, f"{prefix}.{k}" if prefix else k, v)
        else:
            rows.append({"group": group, "figure": prefix, "value": node})

    for g in report_["groups"]:
        walk(g["group"], "", {k: v for k, v in g.items() if k != "group"})
    return rows
