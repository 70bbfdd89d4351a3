"""``homeward teams``: the organisation file (teams, staff, rotas, escalation policies)."""

from __future__ import annotations

from pathlib import Path

import click

from alerts.escalation import working_hours
from alerts.escalation_store import load_organisation
from alerts.teams import Organisation, load_org_file
from commands.common import database
from commands.output import emit
from homeward.db.connect import connect


@click.group()
def teams() -> None:
    """Organisation: localities, neighbourhood teams, staff, rotas, escalation."""


@teams.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def teams_load(ctx: click.Context, path: Path) -> None:
    """Validate and apply an organisation file (idempotent: the same file loads once)."""
    text = path.read_text(encoding="utf-8")
    org = load_org_file(text)
    with database(ctx) as dsn, connect(dsn) as conn:
        version = load_organisation(conn, org, text)
    people = sum(len(t.staff) for t in org.teams.values())
    state = f"version {version}" if version else "unchanged (already in force)"
    click.echo(f"{len(org.teams)} teams, {people} staff: {state}")


@teams.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def teams_show(ctx: click.Context, as_json: bool) -> None:
    """What is in force."""
    with database(ctx) as dsn, connect(dsn) as conn:
        row = conn.execute(
            "SELECT version, loaded_at, document FROM org_versions ORDER BY version DESC LIMIT 1"
        ).fetchone()
        counts = conn.execute("SELECT team_id, count(*) FROM staff GROUP BY 1").fetchall()
        staff = {str(team): int(str(n)) for team, n in counts}
    if row is None:
        click.echo("no organisation loaded: homeward teams load deploy/teams.example.yaml")
        return
    org = Organisation.model_validate(row[2])
    if not as_json:
        click.echo(
            f"version {row[0]} loaded {row[1]:%Y-%m-%d %H:%M}; working hours "
            f"{working_hours(org.calendar)}"
        )
    rows = [
        {
            "locality": loc.name,
            "team": t.id,
            "name": t.name,
            "staff": staff.get(t.id, 0),
            "practices": list(t.practices),
            "out_of_hours": t.out_of_hours,
            "policies": sorted(t.escalation),
        }
        for loc in org.localities
        for t in loc.teams
    ]
    emit(rows, as_json=as_json, title="teams")
