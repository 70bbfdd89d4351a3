"""The outcomes report end to end on real PostgreSQL: alerts acknowledged, resolved and
escalated through the lifecycle and escalation stores with an injected clock, admissions
imported through the command line, and the figures read back through ``homeward
outcomes`` (unsuppressed) and ``GET /api/v1/outcomes`` (suppressed, audited, refused to
patients and to roles without clinical access)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from api_support import DEAL_NHS, Api, api, audit_rows, clock, seeded  # fixtures
from click.testing import CliRunner

from alerts import escalation_store
from alerts.commands import Acknowledge, Resolve
from alerts.lifecycle_store import apply_command
from api.tokens import issue_token
from commands.main import cli

MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # in hours; London is on UTC
__all__ = ["api", "clock", "seeded"]
PERIOD = ["--from", "2026-11-23", "--to", "2026-11-29"]


def _raise(conn: psycopg.Connection[Any], patient: int, at: datetime, priority: str) -> int:
    row = conn.execute(
        "INSERT INTO alerts (patient_id, rule_id, kind, priority, team_id, opened_at,"
        " first_measured_at, latest_measured_at, message)"
        " VALUES (%s, %s, 'threshold', %s, 'deal', %s, %s, %s, 'systolic high')"
        " RETURNING alert_id",
        (patient, f"threshold:systolic_bp:{priority}", priority, at, at, at),
    ).fetchone()
    assert row is not None
    return int(row[0])


async def _tick(db_url: str, at: datetime) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await escalation_store.tick(conn, at)


async def _person(db_url: str, alert: int, command: Any) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await apply_command(conn, alert, command, command.at)


@pytest.fixture
async def scenario(
    db_url: str, seeded: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, Any]:
    """The Deal patient (hypertension: a systolic reading due daily), enrolled before the
    week; a red alert answered in 5 minutes and resolved in an hour as admission avoided;
    an amber alert nobody answers, which runs its whole ladder; an admission 3 days on."""
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    deal = seeded["deal"]
    with psycopg.connect(db_url) as conn:
        conn.execute("DELETE FROM readings")  # the seed's; these are the week's
        conn.execute("DELETE FROM alert_events")
        conn.execute("DELETE FROM alerts")
        conn.execute("UPDATE patients SET created_at = %s", (MONDAY_10 - timedelta(days=30),))
        conn.execute(
            "UPDATE patients SET conditions = '{hypertension}' WHERE patient_id = %s", (deal,)
        )
        for day, hour in ((0, 7), (0, 19), (1, 8), (2, 8), (4, 8), (6, 8)):  # 5 of 7 days
            at = MONDAY_10.replace(hour=hour) + timedelta(days=day)
            conn.execute(
                "INSERT INTO readings (time, patient_id, device_id, metric, value,"
                " received_at, msg_id) VALUES (%s, %s, %s, 'systolic_bp', 150, %s, %s)",
                (at, deal, f"dev-{deal}", at, f"w-{at.timestamp()}"),
            )
        conn.execute(
            "INSERT INTO staff (staff_id, name, team_id, roles)"
            " VALUES ('icb.analyst', 'ICB analyst', 'deal', '{commissioner}')"
        )
        red = _raise(conn, deal, MONDAY_10, "red")
        amber = _raise(conn, deal, MONDAY_10 + timedelta(hours=1), "amber")
        conn.commit()
        seeded["tokens"]["commissioner"] = issue_token(
            conn, now=datetime.now(UTC), staff_id="icb.analyst"
        )[1]
    await _tick(db_url, MONDAY_10)  # plans both ladders; red level 1 goes out
    await _person(db_url, red, Acknowledge("deal.mn1", MONDAY_10 + timedelta(minutes=5)))
    await _person(
        db_url,
        red,
        Resolve("deal.mn1", MONDAY_10 + timedelta(hours=1), "admission_avoided", "visited"),
    )
    await _tick(db_url, MONDAY_10 + timedelta(hours=1))  # amber level 1
    await _tick(db_url, MONDAY_10 + timedelta(days=2))  # amber: every step left, unanswered
    admissions = tmp_path / "admissions.csv"
    admissions.write_text(f"nhs_number,admission_date\n{DEAL_NHS},2026-11-26\n")
    imported = CliRunner().invoke(cli, ["admissions", "import", str(admissions), "--by", "bi"])
    assert imported.exit_code == 0, imported.output
    return {"red": red, "amber": amber}


def _deal(report: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [g for g in report["groups"] if g["group"] == "deal"]
    assert len(found) == 1
    return found[0]


@pytest.mark.usefixtures("scenario")
def test_the_command_line_reports_the_week_s_figures(db_url: str) -> None:
    out = CliRunner().invoke(cli, ["outcomes", *PERIOD, "--json"])
    assert out.exit_code == 0, out.output
    report = orjson.loads(out.output)
    assert (report["from"], report["to"], report["by"]) == ("2026-11-23", "2026-11-29", "team")
    deal = _deal(report)
    assert deal["patients"] == 2  # the Deal patient and the quiet one
    assert deal["patient_weeks"] == 2.0
    assert deal["alerts"]["all"] == {"count": 2, "per_patient_week": 1.0}
    assert deal["handled_by_a_person"]["all"]["count"] == 1
    assert deal["time_to_acknowledge"]["red"] == {"n": 1, "median_min": 5.0, "p90_min": 5.0}
    assert deal["time_to_resolve"]["red"] == {"n": 1, "median_min": 60.0, "p90_min": 60.0}
    assert deal["outcomes"]["admission_avoided"] == 1
    assert deal["outcomes"]["unresolved"] == 1
    assert deal["escalated_beyond_first_level"] == 1  # the amber
    assert deal["reached_no_one_in_time"] == 1  # the amber: its whole ladder unanswered
    # hypertension: a systolic reading due each day; 5 of the 7 days have one (the quiet
    # patient has no conditions, so no schedule)
    assert deal["reading_adherence"] == {"expected": 7, "received": 5, "ratio": 0.714}
    assert deal["admissions"] == {
        "alerts_followed_by_admission_within_7_days": 2,
        "alerts_followed_by_admission_within_30_days": 2,
        "admission_avoided_recorded": 1,
        "admission_avoided_then_admitted_within_30_days": 1,
    }
    by_locality = CliRunner().invoke(cli, ["outcomes", *PERIOD, "--by", "locality", "--csv"])
    assert by_locality.exit_code == 0, by_locality.output
    rows = list(csv.DictReader(io.StringIO(by_locality.output)))
    assert {"group": "all", "figure": "alerts.all.count", "value": "2"} in rows
    table = CliRunner().invoke(cli, ["outcomes", *PERIOD])
    assert table.exit_code == 0, table.output
    assert "time_to_resolve.red.median_min" in table.output
    backwards = CliRunner().invoke(cli, ["outcomes", "--from", "2026-11-29", "--to", "2026-11-23"])
    assert backwards.exit_code == 2
    assert "before it starts" in backwards.output


async def test_the_api_answers_suppressed_aggregates_and_audits_every_request(
    scenario: dict[str, Any], api: Api, db_url: str
) -> None:
    params = {"from": "2026-11-23", "to": "2026-11-29"}
    status, body, _ = await api.get("outcomes", "commissioner", **params)
    assert status == 200, body
    assert body["suppressed_below"] == 5
    deal = _deal(body)
    assert deal["patients"] == "< 5"
    assert deal["alerts"]["all"] == {"count": "< 5", "per_patient_week": "< 5"}
    assert deal["time_to_acknowledge"]["red"]["median_min"] == "< 5"
    assert deal["outcomes"]["no_action_needed"] == 0
    assert DEAL_NHS not in orjson.dumps(body).decode()
    status, _, _ = await api.get("outcomes", "deal.mn1", **params, by="locality")
    assert status == 200  # clinical staff
    for who in ("patient", "deal.sw1"):
        status, body, _ = await api.get("outcomes", who, **params)
        assert status == 403, body
    status, body, _ = await api.get("outcomes", "commissioner", **{"from": "23/11/2026"})
    assert status == 400
    rows = [r for r in audit_rows(db_url) if r[1] == "read_outcomes"]
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("staff:icb.analyst", None, True, 200),
        ("staff:deal.mn1", None, True, 200),
        (f"patient:{DEAL_NHS}", None, False, 403),
        ("staff:deal.sw1", None, False, 403),
        ("staff:icb.analyst", None, False, 400),
    ]
    assert rows[0][5]["reason"] == "role commissioner"
    assert rows[1][5]["by"] == "locality"
