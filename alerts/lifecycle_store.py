"""Applying a person's command to an alert: lock the row, run the pure decision
(alerts/lifecycle.py ``handle``) on the stored alert, write the alert, its events and when
escalation must look at it again, in one transaction. Concurrent commands queue on the row
lock, so a double acknowledgement is refused, not applied twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg

from alerts import alert_store
from alerts.alert import Alert
from alerts.commands import PersonCommand
from alerts.events import Event
from alerts.lifecycle import handle
from homeward.db.connect import wrap_exceptions
from homeward.errors import NotFound

_SHOWN = (  # the fields a person's command can change, shown back to them
    "state",
    "acknowledged_at",
    "acknowledged_by",
    "ack_expires_at",
    "resolved_at",
    "resolved_by",
    "outcome",
    "snoozed_until",
    "snooze_reason",
    "assignee",
)


@dataclass(frozen=True, slots=True)
class Applied:
    """What a person's command did: the alert after it and the events appended."""

    alert: Alert
    events: tuple[Event, ...]
    changes: dict[str, Any]

    @property
    def event(self) -> str:
        return self.events[0].kind

    @property
    def actor(self) -> str:
        return self.events[0].by


async def apply_command(
    conn: psycopg.AsyncConnection[Any], alert_id: int, command: PersonCommand, now: datetime
) -> Applied:
    """Inside the caller's transaction, if any (a savepoint then: a refused command
    leaves the caller's own writes, such as its audit row, in place)."""
    with wrap_exceptions():
        async with conn.transaction(), conn.cursor() as cur:
            found = await alert_store.lock(cur, alert_id)
            if found is None:
                raise NotFound(f"no alert {alert_id}")
            old, _row = found
            new, events = handle(old, command, now)
            await cur.execute(alert_store.Q["save_alert"], alert_store.save_params(new))
            await alert_store.record(cur, alert_id, events)
            await alert_store.refresh_escalation_due(cur, new, now)
    changes = {
        name: _plain(getattr(new, name))
        for name in _SHOWN
        if getattr(new, name) != getattr(old, name)
    }
    return Applied(new, tuple(events), changes)


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, StrEnum) else value
