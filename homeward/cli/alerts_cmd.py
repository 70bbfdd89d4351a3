"""``homeward alerts``: the queue from the command line."""

from __future__ import annotations

import click

from alerts.queue import alert_history, list_alerts
from homeward.cli.common import database
from homeward.cli.output import emit
from homeward.db.connect import connect


@click.group()
def alerts() -> None:
    """The alert queue."""


@alerts.command("list")
@click.option("--team", default=None)
@click.option("--state", type=click.Choice(["open", "acknowledged", "resolved"]), default=None)
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alerts_list(
    ctx: click.Context, team: str | None, state: str | None, limit: int, as_json: bool
) -> None:
    """Alerts, red first, oldest first."""
    with database(ctx) as dsn, connect(dsn) as conn:
        rows = list_alerts(conn, team=team, state=state, limit=limit)
    emit(rows, as_json=as_json, title="alerts")


@alerts.command("history")
@click.argument("alert_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alerts_history(ctx: click.Context, alert_id: int, as_json: bool) -> None:
    """Every event of one alert, in order."""
    with database(ctx) as dsn, connect(dsn) as conn:
        emit(alert_history(conn, alert_id), as_json=as_json, title=f"alert {alert_id}")
