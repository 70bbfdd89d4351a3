"""Fetching the outcomes report's rows (alerts/outcomes.sql) and computing the report
(alerts/outcomes.py), for the command line and the API alike."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts.adherence import schedules_for
from alerts.outcomes import (
    REPORT_TZ,
    AlertRow,
    GroupBy,
    PatientRow,
    Period,
    report,
    schedule_adherence,
)
from homeward.db.queries import load_queries

Q = load_queries(Path(__file__).with_name("outcomes.sql"))


async def outcomes_report(
    conn: psycopg.AsyncConnection[Any], period: Period, by: GroupBy
) -> dict[str, Any]:
    """Every figure of the period, per group (unsuppressed: see ``outcomes.suppress``)."""
    args = {"start": period.start, "end": period.end, "tz": str(REPORT_TZ)}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["period_alerts"], args)
        alerts = [AlertRow(**r) for r in await cur.fetchall()]
        await cur.execute(Q["period_patients"], args)
        patients = await cur.fetchall()
        schedules = {
            p["patient_id"]: [
                (s.metric, s.tz) for s in schedules_for(p["conditions"], p["overrides"])
            ]
            for p in patients
        }
        days: dict[tuple[int, str], set[date]] = defaultdict(set)
        zones = {tz for found in schedules.values() for _, tz in found}
        for tz in sorted(zones):
            scheduled = [pid for pid, found in schedules.items() if any(z == tz for _, z in found)]
            metrics = sorted({m for found in schedules.values() for m, z in found if z == tz})
            await cur.execute(
                Q["reading_days"], {**args, "tz": tz, "patients": scheduled, "metrics": metrics}
            )
            for r in await cur.fetchall():
                days[(r["patient_id"], r["metric"])].add(r["day"])
    rows = []
    for p in patients:
        pid = p["patient_id"]
        reading_days = {m: frozenset(days[(pid, m)]) for m, _ in schedules[pid]}
        expected, received = schedule_adherence(
            schedules[pid], reading_days, p["enrolled_at"], period
        )
        rows.append(
            PatientRow(pid, p["team_id"], p["locality"], p["enrolled_at"], expected, received)
        )
    return report(alerts, rows, period, by)
