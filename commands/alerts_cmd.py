"""``homeward alerts``: the queue from the command line."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import click

from alerts.alert import Outcome
from alerts.commands import (
    Acknowledge,
    AddNote,
    PersonCommand,
    Reassign,
    Resolve,
    Snooze,
    Unsnooze,
)
from alerts.lifecycle_store import Applied, apply_command
from alerts.queue import alert_history, list_alerts
from commands.audit_trail import record_read
from commands.common import database
from commands.output import emit, emit_one
from homeward.db.connect import connect, connect_async


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
        record_read(
            conn,
            ctx,
            "list_alerts",
            nhs_numbers=[r["nhs_number"] for r in rows],
            detail={"team": team, "state": state, "alerts": [r["alert_id"] for r in rows]},
        )
    emit(rows, as_json=as_json, title="alerts")


@alerts.command("history")
@click.argument("alert_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alerts_history(ctx: click.Context, alert_id: int, as_json: bool) -> None:
    """Every event of one alert, in order."""
    with database(ctx) as dsn, connect(dsn) as conn:
        rows = alert_history(conn, alert_id)
        owner = conn.execute("SELECT patient_id FROM alerts WHERE alert_id = %s", (alert_id,))
        found = owner.fetchone()
        record_read(
            conn,
            ctx,
            "alert_history",
            patient_ids=[int(str(found[0]))] if found else [],
            detail={"alert_id": alert_id},
        )
    emit(rows, as_json=as_json, title=f"alert {alert_id}")


def _apply(ctx: click.Context, alert_id: int, command: PersonCommand, as_json: bool) -> None:
    async def apply(dsn: str) -> Applied:
        async with connect_async(dsn) as conn:
            return await apply_command(conn, alert_id, command, datetime.now(UTC))

    with database(ctx) as dsn:
        decision = asyncio.run(apply(dsn))
    row = {
        "alert_id": alert_id,
        "event": decision.event,
        "by": decision.actor,
        **{k: v for k, v in decision.changes.items() if v is not None},
    }
    emit_one(row, as_json=as_json)


@alerts.command("ack")
@click.argument("alert_id", type=int)
@click.option("--by", required=True, help="Who acknowledges (staff id).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alerts_ack(ctx: click.Context, alert_id: int, by: str, as_json: bool) -> None:
    """Acknowledge: escalation stops (until the policy's acknowledgement timeout)."""
    _apply(ctx, alert_id, Acknowledge(by, datetime.now(UTC)), as_json)


@alerts.command("resolve")
@click.argument("alert_id", type=int)
@click.option("--outcome", required=True, type=click.Choice([o.value for o in Outcome]))
@click.option("--by", required=True)
@click.option("--note", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alerts_resolve(
    ctx: click.Context, alert_id: int, outcome: str, by: str, note: str | None, as_json: bool
) -> None:
    """Resolve with an outcome code."""
    _apply(ctx, alert_id, Resolve(by, datetime.now(UTC), outcome, note), as_json)


@alerts.command("snooze")
@click.argument("alert_id", type=int)
@click.option("--minutes", required=True, type=click.FloatRange(min=1))
@click.option("--reason", required=True)
@click.option("--by", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alerts_snooze(
    ctx: click.Context, alert_id: int, minutes: float, reason: str, by: str, as_json: bool
) -> None:
    """Snooze for a time, with a reason (red: one hour at most)."""
    now = datetime.now(UTC)
    _apply(ctx, alert_id, Snooze(by, now, now + timedelta(minutes=minutes), reason), as_json)


@alerts.command("unsnooze")
@click.argument("alert_id", type=int)
@click.option("--by", required=True, help="Who ends the snooze (staff id).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alerts_unsnooze(ctx: click.Context, alert_id: int, by: str, as_json: bool) -> None:
    """End a snooze early: escalation resumes where it paused (recorded in the history)."""
    _apply(ctx, alert_id, Unsnooze(by, datetime.now(UTC)), as_json)


@alerts.command("reassign")
@click.argument("alert_id", type=int)
@click.option("--to", "to", required=True)
@click.option("--by", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alerts_reassign(ctx: click.Context, alert_id: int, to: str, by: str, as_json: bool) -> None:
    """Give the alert to someone else."""
    _apply(ctx, alert_id, Reassign(by, datetime.now(UTC), to), as_json)


@alerts.command("note")
@click.argument("alert_id", type=int)
@click.option("--text", required=True)
@click.option("--by", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alerts_note(ctx: click.Context, alert_id: int, text: str, by: str, as_json: bool) -> None:
    """Add a note to the alert's history."""
    _apply(ctx, alert_id, AddNote(by, datetime.now(UTC), text), as_json)
