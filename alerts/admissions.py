"""Hospital admissions imported from a CSV file, for the outcomes report's follow-up of
admissions within 7 and 30 days of an alert (docs/outcomes.md).

The file has a header ``nhs_number,admission_date`` and one admission a row: a valid NHS
number (spaces or hyphens in the 3-3-4 grouping allowed) and an ISO date (YYYY-MM-DD),
not in the future. :func:`parse_admissions` is pure: it reads every row and returns every
problem with its line number. :func:`import_admissions` refuses the whole file if any row
is bad — including an NHS number of nobody monitored here, unless ``skip_unknown`` — and
otherwise stores every row in one transaction, so nothing is ever half-imported.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psycopg

from homeward.db.queries import load_queries
from homeward.errors import InvalidNhsNumber, ValidationError
from homeward.nhs import normalise_nhs_number

Q = load_queries(Path(__file__).with_name("admissions.sql"))
HEADER = ("nhs_number", "admission_date")
MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class AdmissionRow:
    line: int
    nhs_number: str
    admitted_on: date


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


@dataclass(frozen=True, slots=True)
class ImportReport:
    rows: int  # rows in the file
    added: int  # admissions newly recorded
    already: int  # admissions recorded before (same patient and day)
    skipped_unknown: int  # rows of NHS numbers of nobody monitored (skip_unknown only)


class BadAdmissionsFile(ValidationError):
    """The file was refused whole; ``problems`` names each bad row's line."""

    def __init__(self, problems: list[RowProblem]) -> None:
        shown = "; ".join(str(p) for p in problems[:MAX_PROBLEMS_SHOWN])
        more = len(problems) - MAX_PROBLEMS_SHOWN
        tail = f"; and {more} more" if more > 0 else ""
        super().__init__(
            f"nothing imported: {len(problems)} bad row{'s' * (len(problems) != 1)}: {shown}{tail}"
        )
        self.problems = problems


def parse_admissions(text: str, today: date) -> tuple[list[AdmissionRow], list[RowProblem]]:
    """Every row of the file, and every problem with its line number (1 is the header).
    Blank lines are ignored; a date after ``today`` is refused."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    rows: list[AdmissionRow] = []
    problems: list[RowProblem] = []
    header = next(reader, None)
    if header is None:
        return [], [
            RowProblem(1, "the file is empty: expected the header nhs_number,admission_date")
        ]
    if tuple(h.strip().lower() for h in header) != HEADER:
        problems.append(RowProblem(1, "expected the header nhs_number,admission_date"))
        return rows, problems
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader, None)
        except csv.Error as exc:
            problems.append(RowProblem(start, f"not readable as CSV ({exc})"))
            break
        if fields is None:
            break
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != 2:
            problems.append(RowProblem(start, f"expected 2 fields, found {len(fields)}"))
            continue
        raw_number, raw_date = (f.strip() for f in fields)
        try:
            number = normalise_nhs_number(raw_number)
        except InvalidNhsNumber as exc:
            problems.append(RowProblem(start, str(exc)))
            continue
        try:
            day = date.fromisoformat(raw_date)
            if len(raw_date) != 10:
                raise ValueError
        except ValueError:
            problems.append(RowProblem(start, f"{raw_date!r} is not a date (YYYY-MM-DD)"))
            continue
        if day > today:
            problems.append(RowProblem(start, f"{day} is in the future"))
            continue
        rows.append(AdmissionRow(start, number, day))
    return rows, problems


def import_admissions(
    conn: psycopg.Connection[Any],
    text: str,
    *,
    source: str,
    by: str,
    today: date,
    skip_unknown: bool = False,
) -> ImportReport:
    """Store the file's admissions in one transaction, or refuse it whole
    (:class:`BadAdmissionsFile`) with every bad row's line number."""
    rows, problems = parse_admissions(text, today)
    with conn.transaction():
        numbers = sorted({r.nhs_number for r in rows})
        known = dict(conn.execute(Q["patients_by_nhs_number"], {"numbers": numbers}).fetchall())
        unknown = [r for r in rows if r.nhs_number not in known]
        if unknown and not skip_unknown:
            problems += [
                RowProblem(r.line, f"no monitored patient has NHS number {r.nhs_number}")
                for r in unknown
            ]
        if problems:
            raise BadAdmissionsFile(sorted(problems, key=lambda p: p.line))
        kept = {(known[r.nhs_number], r.admitted_on) for r in rows if r.nhs_number in known}
        ordered = sorted(kept)
        added = conn.execute(
            Q["insert_admissions"],
            {
                "patient_id": [p for p, _ in ordered],
                "admitted_on": [d for _, d in ordered],
                "source": source,
                "by": by,
            },
        ).fetchall()
    return ImportReport(
        rows=len(rows),
        added=len(added),
        already=len(ordered) - len(added),
        skipped_unknown=len(unknown),
    )
