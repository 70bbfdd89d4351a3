"""Applying a person's command to an alert: lock the row, decide (pure), write the
changes and the event in one transaction. Concurrent commands queue on the row lock, so a
double acknowledgement is refused, not applied twice."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from alerts.escalation_store import policy_ack_timeout
from alerts.events import INSERT_EVENT, event
from alerts.lifecycle import Acknowledge, AlertState, Command, Decision, State, decide
from homeward.db.connect import wrap_exceptions
from homeward.db.queries import load_queries
from homeward.errors import NotFound

Q = load_queries(Path(__file__).with_name("escalation.sql"))
_COLUMNS = {
    "state",
    "acknowledged_at",
    "acknowledged_by",
    "ack_expires_at",
    "resolved_at",
    "resolved_by",
    "outcome",
    "snoozed_until",
    "assignee",
}


async def apply_command(
    conn: psycopg.AsyncConnection[Any], alert_id: int, command: Command, now: datetime
) -> Decision:
    """Inside the caller's transaction, if any (a savepoint then: a refused command
    leaves the caller's own writes, such as its audit row, in place)."""
    with wrap_exceptions():
        async with conn.transaction():
            return await _apply(conn, alert_id, command, now)


async def _apply(
    conn: psycopg.AsyncConnection[Any], alert_id: int, command: Command, now: datetime
) -> Decision:
    row = await (await conn.execute(Q["lock_alert"], {"alert_id": alert_id})).fetchone()
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    state, priority, acknowledged_by, ack_expires_at, snoozed_until, assignee, policy = row
    if isinstance(command, Acknowledge) and command.timeout_s is None:
        command = Acknowledge(command.by, command.at, policy_ack_timeout(policy))
    decision = decide(
        AlertState(
            State(state), priority, acknowledged_by, ack_expires_at, snoozed_until, assignee
        ),
        command,
    )
    changes = {k: v for k, v in decision.changes.items() if k in _COLUMNS}
    assignments = [
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in changes
    ]
    assignments.append(sql.SQL("updated_at = {}").format(sql.Placeholder("now")))
    await conn.execute(
        sql.SQL("UPDATE alerts SET {} WHERE alert_id = {}").format(
            sql.SQL(", ").join(assignments), sql.Placeholder("alert_id")
        ),
        {**changes, "now": now, "alert_id": alert_id},
    )
    await conn.execute(INSERT_EVENT, event(alert_id, decision.event, decision.actor, decision.data))
    await conn.execute(
        "SELECT pg_notify('homeward_team_' || team_id, %s) FROM alerts WHERE alert_id = %s",
        (f'{{"alert_id": {alert_id}, "event": "{decision.event}"}}', alert_id),
    )
    return decision
