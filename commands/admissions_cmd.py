"""``homeward admissions import FILE.csv``: hospital admissions, for the outcomes report."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import click

from alerts.admissions import import_admissions
from commands.common import database
from commands.output import emit_one
from homeward.db.connect import connect


@click.group()
def admissions() -> None:
    """Hospital admissions (the 7- and 30-day follow-up of alerts)."""


@admissions.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", required=True, help="Who imports the file (staff id or name).")
@click.option(
    "--skip-unknown",
    is_flag=True,
    help="Skip rows of NHS numbers of nobody monitored here instead of refusing the file.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def admissions_import(
    ctx: click.Context, file: Path, by: str, skip_unknown: bool, as_json: bool
) -> None:
    """Import a CSV with the header nhs_number,admission_date (YYYY-MM-DD): every row or
    none — a bad row refuses the whole file, naming its line."""
    text = file.read_text(encoding="utf-8")
    with database(ctx) as dsn, connect(dsn) as conn:
        report = import_admissions(
            conn,
            text,
            source=file.name,
            by=by,
            today=datetime.now(UTC).date(),
            skip_unknown=skip_unknown,
        )
    emit_one(dataclasses.asdict(report), as_json=as_json)
