"""The alert row ↔ the lifecycle's ``Alert``: every stored path (the rule stage, a
person's command, escalation) locks the row, builds the ``Alert``, runs the one pure
decision (alerts/lifecycle.py ``handle``) and writes back what it returns with the
helpers here — the alert, its events, the notifications it asked for, and when escalation
must look at it again (alerts/escalation.py ``next_check_at``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerts.alert import Alert, Hold, Outcome, State
from alerts.escalation import EscalationStep, next_check_at
from alerts.events import INSERT_EVENT, Event, NotificationRequested
from alerts.rules.types import Priority
from alerts.teams import Policy
from homeward.db.queries import load_queries

Q = load_queries(Path(__file__).with_name("alert_store.sql"))
Cursor = psycopg.AsyncCursor[Any]
Row = Mapping[str, Any]


def policy_ack_timeout(snapshot: Mapping[str, Any] | None) -> float | None:
    """The acknowledgement timeout of the policy snapshot an alert keeps."""
    if not snapshot or "levels" not in snapshot:
        return None
    ladder = {k: v for k, v in snapshot.items() if k in Policy.model_fields}
    return Policy.model_validate(ladder).ack_timeout_s


def _holds(raw: Iterable[Mapping[str, Any]]) -> tuple[Hold, ...]:
    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    return tuple(
        Hold(h["reason"], datetime.fromisoformat(h["start"]), when(h.get("end"))) for h in raw
    )


def from_row(row: Row) -> Alert:
    """The ``Alert`` of a row read with ``lock_alert`` / ``lock_unresolved``."""
    return Alert(
        id=int(row["alert_id"]),
        patient_id=int(row["patient_id"]),
        rule_id=row["rule_id"],
        priority=Priority(row["priority"]),
        opened_at=row["opened_at"],
        state=State(row["state"]),
        direction=row["direction"],
        message=row["message"],
        count=int(row["hit_count"]),
        first_value=row["first_value"],
        latest_value=row["latest_value"],
        worst_value=row["worst_value"],
        first_measured_at=row["first_measured_at"],
        latest_measured_at=row["latest_measured_at"],
        condition_cleared=bool(row["condition_cleared"]),
        ack_timeout_s=policy_ack_timeout(row["policy"]),
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        ack_expires_at=row["ack_expires_at"],
        snoozed_until=row["snoozed_until"],
        snoozed_by=row["snoozed_by"],
        snooze_reason=row["snooze_reason"],
        assignee=row["assignee"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        outcome=Outcome(row["outcome"]) if row["outcome"] else None,
        last_step_no=int(row["last_step_no"]),
        escalation_level=int(row["escalation_level"]),
        notified=tuple(row["notified"]),
        holds=_holds(row["holds"]),
        updated_at=row["updated_at"],
    )


def _holds_json(holds: Iterable[Hold]) -> Jsonb:
    return Jsonb(
        [
            {
                "reason": h.reason,
                "start": h.start.isoformat(),
                "end": h.end.isoformat() if h.end else None,
            }
            for h in holds
        ]
    )


def save_params(
    alert: Alert,
    *,
    details: Mapping[str, Any] | None = None,
    plan_from: datetime | None = None,
) -> dict[str, Any]:
    """The parameters of ``save_alert``: every column the decision may change."""
    return {
        "alert_id": alert.id,
        "priority": alert.priority.value,
        "state": alert.state.value,
        "message": alert.message,
        "count": alert.count,
        "latest_value": alert.latest_value,
        "worst_value": alert.worst_value,
        "latest_measured_at": alert.latest_measured_at,
        "condition_cleared": alert.condition_cleared,
        "acknowledged_at": alert.acknowledged_at,
        "acknowledged_by": alert.acknowledged_by,
        "ack_expires_at": alert.ack_expires_at,
        "snoozed_until": alert.snoozed_until,
        "snoozed_by": alert.snoozed_by,
        "snooze_reason": alert.snooze_reason,
        "assignee": alert.assignee,
        "resolved_at": alert.resolved_at,
        "resolved_by": alert.resolved_by,
        "outcome": alert.outcome.value if alert.outcome else None,
        "last_step_no": alert.last_step_no,
        "escalation_level": alert.escalation_level,
        "notified": Jsonb(list(alert.notified)),
        "holds": _holds_json(alert.holds),
        "updated_at": alert.updated_at,
        "details": Jsonb(dict(details)) if details is not None else None,
        "plan_from": plan_from,
    }


def insert_params(
    alert: Alert,
    *,
    kind: str,
    metric: str | None,
    details: Mapping[str, Any],
    team_id: str | None = None,
    policy: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters of ``insert_alert`` for a newly raised alert."""
    return {
        "patient_id": alert.patient_id,
        "rule_id": alert.rule_id,
        "kind": kind,
        "metric": metric,
        "priority": alert.priority.value,
        "team_id": team_id,
        "opened_at": alert.opened_at,
        "updated_at": alert.updated_at or alert.opened_at,
        "first_measured_at": alert.first_measured_at,
        "latest_measured_at": alert.latest_measured_at,
        "first_value": alert.first_value,
        "latest_value": alert.latest_value,
        "worst_value": alert.worst_value,
        "count": alert.count,
        "message": alert.message,
        "details": Jsonb(dict(details)),
        "direction": alert.direction,
        "condition_cleared": alert.condition_cleared,
        "policy": Jsonb(dict(policy)) if policy is not None else None,
        "plan_from": None,
    }


async def lock(cur: Cursor, alert_id: int) -> tuple[Alert, Row] | None:
    """The alert, locked for this transaction, and its row (team, policy)."""
    async with cur.connection.cursor(row_factory=dict_row) as rows:
        await rows.execute(Q["lock_alert"], {"alert_id": alert_id})
        row = await rows.fetchone()
    return (from_row(row), row) if row is not None else None


async def lock_unresolved(cur: Cursor, keys: Sequence[tuple[int, str]]) -> list[dict[str, Any]]:
    async with cur.connection.cursor(row_factory=dict_row) as rows:
        await rows.execute(
            Q["lock_unresolved"],
            {"patient_ids": [k[0] for k in keys], "rule_ids": [k[1] for k in keys]},
        )
        return await rows.fetchall()


async def steps_of(cur: Cursor, alert_id: int) -> tuple[list[EscalationStep], set[int]]:
    """The alert's planned (not withdrawn) steps and the numbers of those fired."""
    await cur.execute(Q["active_steps"], {"alert_id": alert_id})
    steps, fired = [], set()
    for step_no, level, due_at, targets, planned_at, was_fired in await cur.fetchall():
        steps.append(EscalationStep(step_no, level, due_at, tuple(targets), planned_at=planned_at))
        if was_fired:
            fired.add(step_no)
    return steps, fired


async def record(cur: Cursor, alert_id: int, events: Sequence[Event]) -> None:
    """Append the decision's events; queue the notifications it asked for (sent by the
    next escalation tick); tell the team's live stream. (An escalation step's own
    notifications go out with the step: alerts/escalation_store.py.)"""
    if not events:
        return
    await cur.executemany(INSERT_EVENT, [e.params(alert_id) for e in events])
    asked = [
        {"alert_id": alert_id, "at": e.at, "targets": Jsonb(list(e.targets)), "reason": e.reason}
        for e in events
        if isinstance(e, NotificationRequested) and e.targets
    ]
    if asked:
        await cur.executemany(Q["request_notification"], asked)
    await cur.execute(Q["notify_team"], {"alert_id": alert_id, "event": events[0].kind})


async def refresh_escalation_due(
    cur: Cursor, alert: Alert, now: datetime, stored: datetime | None = None
) -> None:
    """Store when escalation must look at ``alert`` again (the escalation tick reads
    ``alerts.escalation_due_at``), from its stored steps and the pure ``next_check_at``;
    nothing is written when it is the time already ``stored``."""
    steps, fired = await steps_of(cur, int(alert.id))
    due = next_check_at(alert, steps, fired, now)
    if stored is None or due != stored:
        await cur.execute(Q["set_escalation_due"], {"alert_id": alert.id, "due_at": due})
