"""The command line lists alerts in the order of the API's team queue: red, amber,
technical, oldest first (a nurse sees the same queue at either door)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
from click.testing import CliRunner

from commands.main import cli
from devices.registry import add_patient


def test_the_cli_lists_alerts_in_the_queue_order(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        patient = add_patient(conn, nhs_number="9434765919", name="Queue Order", team="deal")
        for minutes, priority in ((50, "technical"), (40, "amber"), (30, "red"), (20, "amber")):
            opened = now - timedelta(minutes=minutes)
            conn.execute(
                "INSERT INTO alerts (patient_id, rule_id, kind, priority, team_id, opened_at,"
                " first_measured_at, latest_measured_at, message)"
                " VALUES (%s, %s, 'threshold', %s, 'deal', %s, %s, %s, %s)",
                (patient.patient_id, f"r{minutes}", priority, opened, opened, opened, priority),
            )
        conn.commit()
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    listed = CliRunner().invoke(cli, ["alerts", "list", "--team", "deal", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = orjson.loads(listed.stdout)
    assert [(r["priority"], r["rule_id"]) for r in rows] == [
        ("red", "r30"),
        ("amber", "r40"),
        ("amber", "r20"),
        ("technical", "r50"),
    ]
