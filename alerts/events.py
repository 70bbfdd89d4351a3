"""Alert events (past tense): what happened to an alert, as the lifecycle decides it
(``AlertRaised`` … ``NotificationRequested``), and the one statement that appends any
event — the rules', the lifecycle's, escalation's and adherence's — to the append-only
``alert_events`` table. ``by`` is a staff id, or "rules" / "escalation" for the system."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from psycopg.types.json import Jsonb

from alerts.alert import AlertId, Outcome
from alerts.rules.types import Priority
from homeward.db.queries import load_queries

INSERT_EVENT = load_queries(Path(__file__).with_name("events.sql"))["insert_event"]


def event(alert_id: int, kind: str, actor: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of :data:`INSERT_EVENT` for one event."""
    return {"alert_id": alert_id, "kind": kind, "actor": actor, "data": Jsonb(dict(data))}


@dataclass(frozen=True, slots=True)
class Event:
    kind: ClassVar[str] = "event"
    alert_id: AlertId
    at: datetime
    by: str

    def data(self) -> dict[str, Any]:
        """The event's own fields as JSON-ready values (the ``alert_events.data`` column)."""
        return {
            f.name.rstrip("_"): _json(getattr(self, f.name))
            for f in fields(self)
            if f.name not in ("alert_id", "at", "by")
        }

    def params(self, alert_id: int | None = None) -> dict[str, Any]:
        """The parameters of :data:`INSERT_EVENT` (``alert_id``: the stored id)."""
        stored = int(alert_id if alert_id is not None else self.alert_id)
        return event(stored, self.kind, self.by, self.data())


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return str(value) if isinstance(value, StrEnum) else value


@dataclass(frozen=True, slots=True)
class AlertRaised(Event):
    kind: ClassVar[str] = "raised"
    patient_id: int | str
    rule_id: str
    priority: Priority
    value: float | None
    measured_at: datetime
    message: str
    hits: int = 1  # the rule stage writes a batch's hits of a new alert as one event


@dataclass(frozen=True, slots=True)
class AlertUpdated(Event):
    kind: ClassVar[str] = "updated"
    value: float | None
    measured_at: datetime
    count: int
    worst_value: float | None
    priority: Priority
    previous_priority: Priority | None = None  # set when this hit raised the priority
    hits: int = 1  # the rule stage writes a batch's consecutive updates as one event


@dataclass(frozen=True, slots=True)
class AlertAcknowledged(Event):
    kind: ClassVar[str] = "acknowledged"
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertResolved(Event):
    kind: ClassVar[str] = "resolved"
    outcome: Outcome
    note: str | None


@dataclass(frozen=True, slots=True)
class AlertSnoozed(Event):
    kind: ClassVar[str] = "snoozed"
    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class AlertUnsnoozed(Event):
    """A person ended the snooze early."""

    kind: ClassVar[str] = "unsnoozed"


@dataclass(frozen=True, slots=True)
class SnoozeEnded(Event):
    """The snooze ran out at its time."""

    kind: ClassVar[str] = "snooze_ended"
    until: datetime


@dataclass(frozen=True, slots=True)
class AlertReassigned(Event):
    kind: ClassVar[str] = "reassigned"
    from_: str | None
    to: str


@dataclass(frozen=True, slots=True)
class NoteAdded(Event):
    kind: ClassVar[str] = "note_added"
    text: str


@dataclass(frozen=True, slots=True)
class ConditionClearedEvent(Event):
    kind: ClassVar[str] = "condition_cleared"
    value: float | None
    measured_at: datetime
    latched: bool = True


@dataclass(frozen=True, slots=True)
class AcknowledgementExpired(Event):
    kind: ClassVar[str] = "acknowledgement_expired"
    acknowledged_by: str | None


@dataclass(frozen=True, slots=True)
class AlertEscalated(Event):
    kind: ClassVar[str] = "escalated"
    step_no: int
    level: int
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NotificationRequested(Event):
    """Tell ``targets`` (the current level) again, now, and why."""

    kind: ClassVar[str] = "notification_requested"
    targets: tuple[str, ...]
    reason: str
