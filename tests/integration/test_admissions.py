"""``homeward admissions import``: every row in one transaction, or none."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from alerts import escalation_store
from alerts.teams import load_org_file
from commands.main import cli
from devices.registry import add_patient

EXAMPLE = (Path(__file__).parents[2] / "deploy" / "teams.example.yaml").read_text()
DEAL, DOVER, NOBODY = "9434765919", "9434765870", "4010232137"


@pytest.fixture
def patients(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    with psycopg.connect(db_url) as conn:
        escalation_store.load_organisation(conn, load_org_file(EXAMPLE), EXAMPLE)
        add_patient(conn, nhs_number=DEAL, name="Dee Deal", team="deal")
        add_patient(conn, nhs_number=DOVER, name="Dov Dover", team="dover")
        conn.commit()
    return db_url


def _admissions(db_url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT p.nhs_number, a.admitted_on::text, a.source FROM admissions a"
            " JOIN patients p USING (patient_id) ORDER BY 1, 2"
        ).fetchall()
    return [(str(n), str(d), str(s)) for n, d, s in rows]


def test_a_good_file_is_imported_and_importing_it_again_adds_nothing(
    patients: str, tmp_path: Path
) -> None:
    path = tmp_path / "admissions.csv"
    path.write_text(
        f"nhs_number,admission_date\n{DEAL},2026-11-01\n{DOVER},2026-11-03\n{DEAL},2026-11-01\n"
    )
    out = CliRunner().invoke(cli, ["admissions", "import", str(path), "--by", "bi", "--json"])
    assert out.exit_code == 0, out.output
    assert '"added": 2' in out.output
    assert '"already": 0' in out.output
    again = CliRunner().invoke(cli, ["admissions", "import", str(path), "--by", "bi", "--json"])
    assert '"added": 0' in again.output
    assert '"already": 2' in again.output
    assert _admissions(patients) == [
        (DOVER, "2026-11-03", "admissions.csv"),
        (DEAL, "2026-11-01", "admissions.csv"),
    ]


def test_a_file_with_bad_rows_is_refused_whole_naming_each_line(
    patients: str, tmp_path: Path
) -> None:
    path = tmp_path / "admissions.csv"
    path.write_text(
        "nhs_number,admission_date\n"
        f"{DEAL},2026-11-01\n"
        f"{NOBODY},2026-11-02\n"  # line 3: nobody monitored
        f"{DOVER},yesterday\n"  # line 4: not a date
    )
    out = CliRunner().invoke(cli, ["admissions", "import", str(path), "--by", "bi"])
    assert out.exit_code == 2
    assert "nothing imported: 2 bad rows" in out.output
    assert "line 3: no monitored patient has NHS number 4010232137" in out.output
    assert "line 4: 'yesterday' is not a date" in out.output
    assert _admissions(patients) == []  # not even line 2


def test_skip_unknown_counts_the_rows_of_nobody_monitored(patients: str, tmp_path: Path) -> None:
    path = tmp_path / "extract.csv"
    path.write_text(f"nhs_number,admission_date\n{DEAL},2026-11-01\n{NOBODY},2026-11-02\n")
    out = CliRunner().invoke(
        cli, ["admissions", "import", str(path), "--by", "bi", "--skip-unknown", "--json"]
    )
    assert out.exit_code == 0, out.output
    assert '"skipped_unknown": 1' in out.output
    assert _admissions(patients) == [(DEAL, "2026-11-01", "extract.csv")]
