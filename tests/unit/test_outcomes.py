"""The outcomes report's figures against a small scenario worked out by hand
(docs/outcomes.md shows the same arithmetic). The period, 29 March to 4 April 2026, holds
the night the clocks go forward: 7 local days, 167 hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from alerts.outcomes import (
    SUPPRESSED,
    AlertRow,
    PatientRow,
    Period,
    admitted_within,
    flatten,
    monitored_seconds,
    percentile,
    reached_no_one,
    report,
    schedule_adherence,
    suppress,
)

PERIOD = Period(date(2026, 3, 29), date(2026, 4, 4))
BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
APRIL_1 = datetime(2026, 3, 31, 23, tzinfo=UTC)  # local midnight, British Summer Time
MIN = timedelta(minutes=1)


def alert(
    alert_id: int,
    opened: datetime,
    priority: str = "red",
    *,
    team: str | None = "deal",
    patient: int = 1,
    ack: int | None = None,
    resolve: int | None = None,
    outcome: str | None = None,
    planned: int = 0,
    fired: int = 0,
    last_fired: int | None = None,
    admitted: date | None = None,
) -> AlertRow:
    return AlertRow(
        alert_id=alert_id,
        patient_id=patient,
        team_id=team,
        locality={"deal": "east", "dover": "east"}.get(team or ""),
        priority=priority,
        opened_at=opened,
        first_ack_at=None if ack is None else opened + ack * MIN,
        resolved_at=None if resolve is None else opened + resolve * MIN,
        outcome=outcome,
        handled_by_person=ack is not None or resolve is not None,
        steps_planned=planned,
        steps_fired=fired,
        last_fired_at=None if last_fired is None else opened + last_fired * MIN,
        first_admission_on=admitted,
    )


def at(day: int, month: int = 3, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


ALERTS = [
    alert(1, at(30), ack=5, resolve=60, outcome="admission_avoided", planned=2, fired=1,
          admitted=date(2026, 4, 5)),
    alert(2, at(31), ack=15, resolve=120, outcome="visit_arranged", planned=2, fired=2,
          last_fired=10),  # the whole ladder ran before anyone answered
    alert(3, at(1, 4), ack=10, resolve=30, outcome="no_action_needed", planned=2, fired=1),
    alert(4, at(2, 4), ack=20, resolve=240, outcome="advice_given", planned=3, fired=3,
          last_fired=30),  # answered before the last step
    alert(5, at(3, 4), "amber", planned=1, fired=1, last_fired=60,
          admitted=date(2026, 4, 20)),  # nobody answered; admitted 17 days later
    alert(6, at(3, 4), "technical", team=None, patient=3),  # no team: reached no queue
    alert(7, at(29, hour=12), "amber", team="dover", patient=3, ack=30, resolve=45,
          outcome="false_reading", admitted=date(2026, 3, 29)),
]  # fmt: skip
PATIENTS = [
    PatientRow(1, "deal", "east", BEFORE, expected_readings=7, received_readings=6),
    PatientRow(2, "deal", "east", APRIL_1, expected_readings=4, received_readings=2),
    PatientRow(3, "dover", "east", BEFORE, expected_readings=7, received_readings=7),
]


def group(result: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [g for g in result["groups"] if g["group"] == name]
    assert len(found) == 1
    return found[0]


def test_percentiles_interpolate_between_ranks_with_ties() -> None:
    assert percentile([5, 15, 10, 20], 0.5) == 12.5
    assert percentile([5, 15, 10, 20], 0.9) == pytest.approx(18.5)  # 15 + 0.7 × 5
    assert percentile([10, 10, 10, 40], 0.5) == 10
    assert percentile([10, 10, 10, 40], 0.9) == pytest.approx(31)  # 10 + 0.7 × 30
    assert percentile([7], 0.9) == 7
    assert percentile([], 0.5) is None


def test_the_period_is_whole_local_days_across_the_clock_change() -> None:
    assert PERIOD.start == datetime(2026, 3, 29, 0, tzinfo=UTC)  # GMT until 01:00
    assert PERIOD.end == datetime(2026, 4, 4, 23, tzinfo=UTC)  # BST
    assert monitored_seconds(BEFORE, PERIOD) == 167 * 3600
    assert monitored_seconds(APRIL_1, PERIOD) == 96 * 3600
    with pytest.raises(ValueError, match="before it starts"):
        Period(date(2026, 4, 2), date(2026, 4, 1))
    with pytest.raises(ValueError, match="between"):
        Period(date(2026, 4, 2), date(9999, 12, 31))


def test_a_team_s_figures_worked_by_hand() -> None:
    deal = group(report(ALERTS, PATIENTS, PERIOD, "team"), "deal")
    assert deal["patients"] == 2
    # (167 h + 96 h) / 168 h = 1.5655 patient-weeks
    assert deal["patient_weeks"] == 1.57
    assert deal["alerts"]["all"] == {"count": 5, "per_patient_week": 3.194}  # 5 / 1.5655
    assert deal["alerts"]["red"] == {"count": 4, "per_patient_week": 2.555}
    assert deal["alerts"]["amber"] == {"count": 1, "per_patient_week": 0.639}
    assert deal["alerts"]["technical"] == {"count": 0, "per_patient_week": 0.0}
    assert deal["handled_by_a_person"]["all"]["count"] == 4  # alert 5 was never answered
    # red acknowledgements after 5, 15, 10, 20 minutes; resolutions after 60, 120, 30, 240
    assert deal["time_to_acknowledge"]["red"] == {"n": 4, "median_min": 12.5, "p90_min": 18.5}
    assert deal["time_to_resolve"]["red"] == {"n": 4, "median_min": 90.0, "p90_min": 204.0}
    assert deal["time_to_acknowledge"]["amber"] == {"n": 0, "median_min": None, "p90_min": None}
    outcomes = deal["outcomes"]
    assert {k: v for k, v in outcomes.items() if v} == {
        "admission_avoided": 1,
        "visit_arranged": 1,
        "no_action_needed": 1,
        "advice_given": 1,
        "unresolved": 1,
    }
    assert deal["escalated_beyond_first_level"] == 2  # alerts 2 and 4
    assert deal["reached_no_one_in_time"] == 2  # alerts 2 and 5
    assert deal["reading_adherence"] == {"expected": 11, "received": 8, "ratio": 0.727}
    assert deal["admissions"] == {
        "alerts_followed_by_admission_within_7_days": 1,  # alert 1 (6 days)
        "alerts_followed_by_admission_within_30_days": 2,  # and alert 5 (17 days)
        "admission_avoided_recorded": 1,
        "admission_avoided_then_admitted_within_30_days": 1,
    }


def test_every_alert_counts_once_in_all_and_once_in_its_group() -> None:
    result = report(ALERTS, PATIENTS, PERIOD, "team")
    assert [g["group"] for g in result["groups"]] == ["all", "(no team)", "deal", "dover"]
    total = group(result, "all")
    assert total["alerts"]["all"]["count"] == 7
    assert total["reached_no_one_in_time"] == 3  # alerts 2, 5 and 6
    assert group(result, "(no team)")["alerts"]["technical"]["count"] == 1
    assert group(result, "(no team)")["alerts"]["all"]["per_patient_week"] is None
    dover = group(result, "dover")
    assert dover["admissions"]["alerts_followed_by_admission_within_7_days"] == 1  # same day
    by_locality = report(ALERTS, PATIENTS, PERIOD, "locality")
    assert [g["group"] for g in by_locality["groups"]] == ["all", "(no team)", "east"]
    assert group(by_locality, "east")["alerts"]["all"]["count"] == 6


def test_a_patient_who_moved_team_counts_where_each_alert_was_handled() -> None:
    moved = [
        alert(1, at(30), team="dover", patient=1, ack=5),  # before the move
        alert(2, at(2, 4), team="deal", patient=1, ack=7),
    ]
    result = report(moved, PATIENTS[:1], PERIOD, "team")
    assert group(result, "dover")["alerts"]["all"]["count"] == 1
    assert group(result, "deal")["alerts"]["all"]["count"] == 1
    assert group(result, "deal")["patients"] == 1  # monitored time: the team now
    assert group(result, "dover")["patients"] == 0


def test_admission_windows_include_the_alert_s_day_and_the_last_day() -> None:
    late_evening = datetime(2026, 6, 1, 23, 30, tzinfo=UTC)  # 2 June, 00:30 in London
    for admitted, in7, in30 in (
        (date(2026, 6, 1), False, False),  # the day before the alert's local day
        (date(2026, 6, 2), True, True),
        (date(2026, 6, 9), True, True),  # 7 days after
        (date(2026, 6, 10), False, True),
        (date(2026, 7, 2), False, True),  # 30 days after
        (date(2026, 7, 3), False, False),
    ):
        row = alert(1, late_evening, admitted=admitted)
        assert (admitted_within(row, 7), admitted_within(row, 30)) == (in7, in30), admitted


def test_reached_no_one_means_no_team_or_the_whole_ladder_unanswered() -> None:
    opened = at(30)
    assert reached_no_one(alert(1, opened, team=None))
    assert not reached_no_one(alert(1, opened))  # nothing planned (no policy): not judged
    assert not reached_no_one(alert(1, opened, planned=2, fired=1))  # still climbing
    assert reached_no_one(alert(1, opened, planned=2, fired=2, last_fired=9))
    assert reached_no_one(alert(1, opened, planned=2, fired=2, last_fired=9, ack=10))
    assert not reached_no_one(alert(1, opened, planned=2, fired=2, last_fired=9, ack=8))
    assert not reached_no_one(alert(1, opened, planned=2, fired=2, last_fired=9, resolve=3))


def test_adherence_counts_whole_local_days_after_enrolment() -> None:
    weight = [("body_weight", "Europe/London")]
    days = {"body_weight": frozenset({date(2026, 3, 30), date(2026, 4, 1), date(2026, 4, 3)})}
    # enrolled at local midnight of 1 April: 1-4 April expected, 1 and 3 April received
    assert schedule_adherence(weight, days, APRIL_1, PERIOD) == (4, 2)
    # half an hour later: 1 April had begun before enrolment, so 2-4 April
    assert schedule_adherence(weight, days, APRIL_1 + 30 * MIN, PERIOD) == (3, 1)
    assert schedule_adherence(weight, days, BEFORE, PERIOD) == (7, 3)
    two = [*weight, ("systolic_bp", "Europe/London")]
    assert schedule_adherence(two, days, BEFORE, PERIOD) == (14, 3)
    assert schedule_adherence([], days, BEFORE, PERIOD) == (0, 0)


def _patients(n: int) -> list[PatientRow]:
    return [PatientRow(i, "deal", "east", BEFORE, 7, 7) for i in range(1, n + 1)]


def test_suppression_hides_counts_of_1_to_4_and_figures_of_groups_under_5_patients() -> None:
    four = [alert(i, at(30), ack=5, resolve=10, outcome="advice_given") for i in range(1, 5)]
    five = [*four, alert(5, at(31), ack=5, resolve=10, outcome="advice_given")]
    shown = group(suppress(report(five, _patients(5), PERIOD, "team")), "deal")
    assert shown["patients"] == 5
    assert shown["alerts"]["red"]["count"] == 5
    assert shown["alerts"]["red"]["per_patient_week"] == 1.006  # 5 / (5 × 167 / 168)
    assert shown["time_to_acknowledge"]["red"]["median_min"] == 5.0
    assert shown["outcomes"]["advice_given"] == 5
    assert shown["outcomes"]["unresolved"] == 0  # zero is shown
    assert shown["reading_adherence"]["ratio"] == 1.0

    hidden = group(suppress(report(four, _patients(5), PERIOD, "team")), "deal")
    assert hidden["alerts"]["red"] == {"count": SUPPRESSED, "per_patient_week": SUPPRESSED}
    assert hidden["time_to_acknowledge"]["red"]["n"] == SUPPRESSED
    assert hidden["time_to_acknowledge"]["red"]["median_min"] == SUPPRESSED
    assert hidden["outcomes"]["advice_given"] == SUPPRESSED
    assert hidden["patient_weeks"] == pytest.approx(4.97)

    few = group(suppress(report(five, _patients(4), PERIOD, "team")), "deal")
    assert few["patients"] == SUPPRESSED
    assert few["patient_weeks"] == SUPPRESSED
    assert few["alerts"]["red"]["count"] == 5
    assert few["alerts"]["red"]["per_patient_week"] == SUPPRESSED
    assert few["reading_adherence"]["ratio"] == SUPPRESSED


def test_flatten_names_every_figure_once_per_group() -> None:
    rows = flatten(report(ALERTS, PATIENTS, PERIOD, "team"))
    figures = {(r["group"], r["figure"]) for r in rows}
    assert len(figures) == len(rows)
    assert ("deal", "time_to_resolve.red.p90_min") in figures
    assert {"group": "deal", "figure": "alerts.all.count", "value": 5} in rows
