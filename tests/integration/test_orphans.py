"""No orphan patients (hazard H14): a patient with no team, or a team the organisation in
force does not have, is refused at enrolment (registry, CLI and database); an
organisation file that drops a team still holding patients is refused as a whole."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from commands.main import cli
from devices.registry import add_patient
from homeward.errors import ValidationError
from support import EXAMPLE_ORG, load_example_org
from tools.bench.workload import synthetic_nhs_numbers

FIRST, SECOND, THIRD = synthetic_nhs_numbers(3)


def test_a_patient_with_no_team_or_an_unknown_team_is_refused(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        load_example_org(conn)
        with pytest.raises(ValidationError, match="needs a responsible team"):
            add_patient(conn, nhs_number=FIRST, name="No Team")
        with pytest.raises(ValidationError, match="unknown team 'nowhere'"):
            add_patient(conn, nhs_number=FIRST, name="Lost", team="nowhere")
        with pytest.raises(ValidationError, match="needs a responsible team"):
            add_patient(conn, nhs_number=FIRST, name="Lost", practice="No Such Surgery")
        # the practice names the team; re-enrolling keeps the team the patient has
        by_practice = add_patient(
            conn, nhs_number=SECOND, name="By Practice", practice="Deal Harbour Surgery (fictional)"
        )
        assert by_practice.team_id == "deal"
        again = add_patient(conn, nhs_number=SECOND, name="By Practice", conditions=["copd"])
        assert again.team_id == "deal"
        conn.commit()
        count = conn.execute("SELECT count(*) FROM patients").fetchone()
        assert count == (1,)
        # the database refuses an orphan too, whatever the door
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO patients (nhs_number, display_name, team_id)"
                " VALUES (%s, 'x', 'nowhere')",
                (THIRD,),
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO patients (nhs_number, display_name) VALUES (%s, 'x')", (THIRD,)
            )


def test_patient_add_without_a_known_team_is_refused_on_the_command_line(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    runner = CliRunner()
    out = runner.invoke(cli, ["patient", "add", "--nhs-number", FIRST, "--name", "No Team"])
    assert out.exit_code == 2
    assert "needs a responsible team" in out.stderr
    out = runner.invoke(
        cli, ["patient", "add", "--nhs-number", FIRST, "--name", "X", "--team", "nowhere"]
    )
    assert out.exit_code == 2
    assert "unknown team 'nowhere'" in out.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM patients").fetchone() == (0,)


def without_team(team: str, path: Path) -> Path:
    """The example organisation file with one team left out."""
    document = yaml.safe_load(EXAMPLE_ORG.read_text(encoding="utf-8"))
    for locality in document["localities"]:
        locality["teams"] = [t for t in locality["teams"] if t["id"] != team]
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_a_teams_load_that_drops_a_team_holding_patients_is_refused(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    runner = CliRunner()
    assert runner.invoke(cli, ["teams", "load", str(EXAMPLE_ORG)]).exit_code == 0
    enrolled = runner.invoke(
        cli, ["patient", "add", "--nhs-number", FIRST, "--name", "Dover Patient", "--team", "dover"]
    )
    assert enrolled.exit_code == 0, enrolled.output
    smaller = without_team("dover", tmp_path / "teams.yaml")
    refused = runner.invoke(cli, ["teams", "load", str(smaller)])
    assert refused.exit_code == 2
    assert "dover holds 1 patient(s)" in refused.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM org_versions").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM teams WHERE team_id = 'dover'").fetchone() == (1,)
    moved = runner.invoke(
        cli, ["patient", "add", "--nhs-number", FIRST, "--name", "Dover Patient", "--team", "deal"]
    )
    assert moved.exit_code == 0, moved.output
    loaded = runner.invoke(cli, ["teams", "load", str(smaller)])
    assert loaded.exit_code == 0, loaded.output
    with psycopg.connect(db_url) as conn:
        # the team left with the file: nobody can be enrolled into it any more
        assert conn.execute("SELECT count(*) FROM teams WHERE team_id = 'dover'").fetchone() == (0,)
    late = runner.invoke(
        cli, ["patient", "add", "--nhs-number", SECOND, "--name", "Late", "--team", "dover"]
    )
    assert late.exit_code == 2
    assert "unknown team 'dover'" in late.stderr
