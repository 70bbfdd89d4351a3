"""``homeward outcomes``: the commissioners' figures per team or locality (docs/outcomes.md)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime
from typing import Any

import click
import orjson
from rich.table import Table

from alerts.outcomes import Period, flatten, suppress
from alerts.outcomes_store import outcomes_report
from commands.common import database
from commands.output import console
from homeward.db.connect import connect_async


@click.command("outcomes")
@click.option("--from", "first", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--to", "last", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--by", type=click.Choice(["team", "locality"]), default="team", show_default=True)
@click.option("--suppress", "hide_small", is_flag=True, help="Show counts of 1 to 4 as '< 5'.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True, help="One row per group and figure.")
@click.pass_context
def outcomes(
    ctx: click.Context,
    first: datetime,
    last: datetime,
    by: str,
    hide_small: bool,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Alerts, response times, outcomes, escalation, adherence and admissions, for whole
    local days FROM to TO inclusive (Europe/London)."""
    if as_json and as_csv:
        raise click.UsageError("--json and --csv: choose one")
    try:
        period = Period(first.date(), last.date())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None

    async def fetch(dsn: str) -> dict[str, Any]:
        async with connect_async(dsn) as conn:
            return await outcomes_report(conn, period, "team" if by == "team" else "locality")

    with database(ctx) as dsn:
        result = asyncio.run(fetch(dsn))
    if hide_small:
        result = suppress(result)
    if as_json:
        click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    elif as_csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, ["group", "figure", "value"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(flatten(result))
        click.echo(out.getvalue(), nl=False)
    else:
        _table(result)


def _table(result: dict[str, Any]) -> None:
    rows = flatten(result)
    groups = [g["group"] for g in result["groups"]]
    table = Table(title=f"outcomes {result['from']} to {result['to']} by {result['by']}")
    table.add_column("figure")
    for g in groups:
        table.add_column(g, justify="right")
    figures: dict[str, dict[str, Any]] = {}
    for r in rows:
        figures.setdefault(r["figure"], {})[r["group"]] = r["value"]
    for figure, values in figures.items():
        table.add_row(figure, *("" if values.get(g) is None else str(values[g]) for g in groups))
    console.print(table)
