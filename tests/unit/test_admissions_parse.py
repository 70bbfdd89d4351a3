"""Parsing an admissions CSV: every row, and every problem with its line number."""

from __future__ import annotations

from datetime import date

from alerts.admissions import AdmissionRow, RowProblem, parse_admissions

TODAY = date(2026, 12, 2)
GOOD, OTHER = "9434765919", "9434765870"


def test_good_rows_are_read_with_their_line_numbers() -> None:
    text = f"nhs_number,admission_date\n{GOOD},2026-11-01\n\n943 476 5870,2026-12-02\n"
    rows, problems = parse_admissions(text, TODAY)
    assert problems == []
    assert rows == [
        AdmissionRow(2, GOOD, date(2026, 11, 1)),
        AdmissionRow(4, OTHER, date(2026, 12, 2)),
    ]


def test_every_bad_row_is_named_by_its_line() -> None:
    text = (
        "NHS_Number,Admission_Date\r\n"
        f"{GOOD},2026-11-01\r\n"  # 2: good
        "9434765918,2026-11-01\r\n"  # 3: check digit
        f"{GOOD},01/11/2026\r\n"  # 4: not ISO
        f"{GOOD},2026-12-03\r\n"  # 5: tomorrow
        f"{GOOD}\r\n"  # 6: one field
        f"{OTHER},2026-2-1\r\n"  # 7: not YYYY-MM-DD
    )
    rows, problems = parse_admissions(text, TODAY)
    assert [r.line for r in rows] == [2]
    assert [p.line for p in problems] == [3, 4, 5, 6, 7]
    assert "check digit" in problems[0].problem
    assert problems[2] == RowProblem(5, "2026-12-03 is in the future")


def test_a_quoted_field_over_two_lines_is_reported_at_the_line_it_starts() -> None:
    text = (
        f'nhs_number,admission_date\n{GOOD},2026-11-01\n"{GOOD}\nx",2026-11-02\n'
        f"{OTHER},2026-11-03\n"
    )
    rows, problems = parse_admissions(text, TODAY)
    assert [p.line for p in problems] == [3]
    assert [r.line for r in rows] == [2, 5]


def test_a_wrong_header_or_an_empty_file_is_refused_at_line_1() -> None:
    assert parse_admissions("", TODAY)[1][0].line == 1
    rows, problems = parse_admissions(f"nhs,date\n{GOOD},2026-11-01\n", TODAY)
    assert rows == []
    assert [p.line for p in problems] == [1]


def test_admission_avoided_is_an_outcome_a_person_resolves_with() -> None:
    from datetime import UTC, datetime

    from alerts.alert import Alert, Outcome, State
    from alerts.commands import Resolve
    from alerts.events import AlertResolved
    from alerts.lifecycle import handle
    from alerts.rules.types import Priority

    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    alert = Alert(1, 1, "news2", Priority.RED, at, state=State.ACKNOWLEDGED)
    resolved, [event] = handle(alert, Resolve("nurse.a", at, "admission_avoided", "at home"), at)
    assert resolved.outcome is Outcome.ADMISSION_AVOIDED
    assert isinstance(event, AlertResolved)
    assert event.data()["outcome"] == "admission_avoided"
