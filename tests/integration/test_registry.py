"""Registry: patients, devices, bindings with validity periods; the CLI that drives it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
from click.testing import CliRunner

from commands.main import cli
from devices.registry import add_device, add_patient, patient_by_nhs
from homeward.errors import Conflict, InvalidNhsNumber, NotFound, ValidationError
from homeward.nhs import is_valid_nhs_number

NHS = "9434765919"
NHS_2 = "4010232137"


def test_database_check_agrees_with_python(db_url: str) -> None:
    numbers = [NHS, NHS_2, "9434765918", "1234567890", "943476591X", ""]
    with psycopg.connect(db_url) as conn:
        for number in numbers:
            row = conn.execute("SELECT nhs_number_is_valid(%s)", (number,)).fetchone()
            assert row == (is_valid_nhs_number(number),), number
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO patients (nhs_number, display_name) VALUES ('9434765918', 'x')"
            )


def test_patient_add_is_idempotent_and_merges_conditions(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        first = add_patient(
            conn, nhs_number="943 476 5919", name="A", conditions=["copd"], team="deal"
        )
        again = add_patient(
            conn, nhs_number=NHS, name="A B", conditions=["heart_failure"], team="deal"
        )
        assert first.created
        assert not again.created
        assert again.patient_id == first.patient_id
        assert again.conditions == ["copd", "heart_failure"]
        with pytest.raises(InvalidNhsNumber):
            add_patient(conn, nhs_number="9434765918", name="bad", team="deal")
        with pytest.raises(ValidationError, match="unknown condition"):
            add_patient(conn, nhs_number=NHS_2, name="x", conditions=["flu"], team="deal")


def test_device_rebinding_closes_the_previous_binding(db_url: str) -> None:
    handover = datetime.now(UTC) - timedelta(days=1)
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="First", team="deal")
        add_patient(conn, nhs_number=NHS_2, name="Second", team="deal")
        first = add_device(conn, "ox-1", patient_nhs_number=NHS, password="s3cret")
        assert first.valid_from.year == 1  # first binding: from the beginning of time
        same = add_device(conn, "ox-1", patient_nhs_number=NHS)
        assert same.closed_previous is None
        moved = add_device(conn, "ox-1", patient_nhs_number=NHS_2, valid_from=handover)
        assert moved.closed_previous == patient_by_nhs(conn, NHS).patient_id
        rows = conn.execute(
            "SELECT p.nhs_number, b.valid_to IS NULL FROM device_bindings b"
            " JOIN patients p USING (patient_id) ORDER BY b.valid_from"
        ).fetchall()
        assert rows == [(NHS, False), (NHS_2, True)]
        stored = conn.execute("SELECT password_hash FROM devices").fetchone()
        assert stored is not None
        assert str(stored[0]).startswith("$7$")
        with pytest.raises(NotFound):
            add_device(conn, "ox-2", patient_nhs_number="9990000026")


def test_overlapping_bindings_are_refused_by_the_database(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="First", team="deal")
        add_patient(conn, nhs_number=NHS_2, name="Second", team="deal")
        add_device(conn, "ox-1", patient_nhs_number=NHS)
        conn.commit()
        with pytest.raises(psycopg.errors.ExclusionViolation):
            conn.execute(
                "INSERT INTO device_bindings (device_id, patient_id, valid_from)"
                " SELECT 'ox-1', patient_id, now() FROM patients WHERE nhs_number = %s",
                (NHS_2,),
            )


def test_cli_registry_round_trip(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    runner = CliRunner()
    out = runner.invoke(
        cli,
        [
            "patient",
            "add",
            "--nhs-number",
            NHS,
            "--name",
            "Test Patient",
            "--team",
            "deal",
            "--condition",
            "copd",
            "--practice",
            "Deal Harbour Surgery (fictional)",
            "--coordinator",
            "deal.cc1",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    enrolled = orjson.loads(out.stdout)
    assert enrolled["nhs_number"] == NHS
    assert (enrolled["practice"], enrolled["care_coordinator"]) == (
        "Deal Harbour Surgery (fictional)",
        "deal.cc1",
    )
    out = runner.invoke(cli, ["device", "add", "ox-9", "--patient", NHS, "--json"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["device", "list", "--json"])
    assert [d["nhs_number"] for d in orjson.loads(out.stdout)] == [NHS]
    bad = runner.invoke(cli, ["patient", "add", "--nhs-number", "9434765918", "--name", "X"])
    assert bad.exit_code == 2
    assert "check digit" in bad.stderr
    missing = runner.invoke(cli, ["device", "add", "ox-10", "--patient", NHS_2])
    assert missing.exit_code == 2
    assert "no patient" in missing.stderr
    out = runner.invoke(cli, ["quarantine", "list", "--json"])
    assert out.exit_code == 0
    assert orjson.loads(out.stdout) == []


def test_conflict_is_our_error(db_url: str) -> None:
    from homeward.db.connect import wrap_exceptions

    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="x", team="deal")
        conn.commit()
        with pytest.raises(Conflict), wrap_exceptions():
            conn.execute(
                "INSERT INTO patients (nhs_number, display_name, team_id) VALUES (%s, 'y', 'deal')",
                (NHS,),
            )
