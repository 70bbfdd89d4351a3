"""Every command-line read of patient data is audited like an API read (issue 14,
item 12): the actor from ``homeward --actor`` or ``HOMEWARD_ACTOR``, else the OS user;
the patients shown; the command."""

from __future__ import annotations

from hashlib import sha256
from typing import Any

import psycopg
import pytest
from api_support import DEAL_NHS, DOVER_NHS, alert_id, seeded
from click.testing import CliRunner

from commands.audit_trail import os_user
from commands.main import cli

__all__ = ["seeded"]


def _quarantine(db_url: str, device: str) -> None:
    payload = b'{"readings": [{"metric": "systolic_bp", "value": "high"}]}'
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO quarantine (first_received_at, last_received_at, topic, device_id,"
            " reason, detail, payload, payload_sha256, payload_bytes)"
            " VALUES (now(), now(), %s, %s, 'schema', 'value: not a number', %s, %s, %s)",
            (f"t/{device}/readings", device, payload, sha256(payload).digest(), len(payload)),
        )


def _audit(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT actor, role, action, patient_id, detail FROM audit_log ORDER BY audit_id"
        ).fetchall()


@pytest.fixture
def runner(db_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    monkeypatch.delenv("HOMEWARD_ACTOR", raising=False)
    return CliRunner()


def test_every_command_line_read_of_patient_data_is_audited(
    runner: CliRunner, db_url: str, seeded: dict[str, Any]
) -> None:
    deal, dover = seeded["deal"], seeded["dover"]
    _quarantine(db_url, f"dev-{dover}")
    red = alert_id(db_url, deal, "red")
    reads: list[tuple[list[str], str, set[int]]] = [
        (["patient", "list"], "list_patients", {deal, dover, deal + 2}),
        (["device", "list"], "list_devices", {deal, dover}),
        (["quarantine", "list", "--json"], "list_quarantine", {dover}),
        (["alerts", "list", "--team", "deal"], "list_alerts", {deal}),
        (["alerts", "history", str(red)], "alert_history", {deal}),
        (["rules", "show", DEAL_NHS], "show_rules", {deal}),
        (["rules", "history", DOVER_NHS], "rules_history", {dover}),
        (["token", "list"], "list_tokens", {deal}),
        (["audit", "list"], "list_audit", {deal, dover}),  # the rows above name them
        (["late-reviews", "list"], "list_late_reviews", set()),
    ]
    for args, _, _ in reads:
        done = runner.invoke(cli, ["--actor", "deal.mn1", *args])
        assert done.exit_code == 0, (args, done.output)
    rows = _audit(db_url)
    assert [r[2] for r in rows] == [action for _, action, _ in reads]
    for (args, action, patients), (actor, role, _, patient_id, detail) in zip(
        reads, rows, strict=True
    ):
        assert (actor, role) == ("cli:deal.mn1", "command_line"), args
        assert set(detail["patients"]) == patients, action
        assert patient_id == (next(iter(patients)) if len(patients) == 1 else None), action
        assert detail["os_user"] == os_user()
        assert detail["command"].endswith(" ".join(a for a in args[:2]))


def test_the_actor_is_the_os_user_unless_named(
    runner: CliRunner, db_url: str, seeded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(cli, ["patient", "list"]).exit_code == 0
    monkeypatch.setenv("HOMEWARD_ACTOR", "deal.gp1")
    assert runner.invoke(cli, ["alerts", "list"]).exit_code == 0
    assert [(r[0], r[2]) for r in _audit(db_url)] == [
        (f"os:{os_user()}", "list_patients"),
        ("cli:deal.gp1", "list_alerts"),
    ]


def test_a_queue_read_is_found_by_the_patients_it_showed(
    runner: CliRunner, db_url: str, seeded: dict[str, Any]
) -> None:
    assert runner.invoke(cli, ["--actor", "x", "alerts", "list"]).exit_code == 0
    listed = runner.invoke(cli, ["audit", "list", "--patient", DOVER_NHS, "--json"])
    assert listed.exit_code == 0, listed.output
    assert '"list_alerts"' in listed.stdout  # detail.patients named Dover's patient
