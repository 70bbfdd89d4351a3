"""The alert lifecycle (DESIGN §4) as a pure decision: a state and a command in, the
changes and the event out — or a refusal a nurse can understand.

States: open → acknowledged → resolved. An acknowledgement may time out (the alert is
open again and escalation resumes, as PagerDuty does). Snooze is explicit, time-limited
and needs a reason. Resolving needs an outcome code. Notes can be added at any time.
Raising and repeat hits are upserts in SQL (one unresolved alert per patient and rule);
here they are modelled too so the whole state × command matrix is one table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from homeward.errors import Conflict, ValidationError


class State(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Outcome(StrEnum):
    NO_ACTION_NEEDED = "no_action_needed"
    ADVICE_GIVEN = "advice_given"
    MEDICATION_CHANGED = "medication_changed"
    VISIT_ARRANGED = "visit_arranged"
    REFERRED_TO_GP = "referred_to_gp"
    RAPID_RESPONSE = "rapid_response"
    ADMITTED = "admitted"
    FALSE_READING = "false_reading"


MAX_SNOOZE = {
    "red": timedelta(hours=1),
    "amber": timedelta(hours=24),
    "technical": timedelta(hours=72),
}


@dataclass(frozen=True, slots=True)
class AlertState:
    state: State
    priority: str
    acknowledged_by: str | None = None
    ack_expires_at: datetime | None = None
    snoozed_until: datetime | None = None
    assignee: str | None = None


@dataclass(frozen=True, slots=True)
class Acknowledge:
    by: str
    at: datetime
    timeout_s: float | None = None  # from the escalation policy: when escalation resumes


@dataclass(frozen=True, slots=True)
class Resolve:
    by: str
    at: datetime
    outcome: str | None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Snooze:
    by: str
    at: datetime
    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Reassign:
    by: str
    at: datetime
    to: str


@dataclass(frozen=True, slots=True)
class AddNote:
    by: str
    at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class ExpireAcknowledgement:
    at: datetime


@dataclass(frozen=True, slots=True)
class RepeatHit:
    at: datetime


Command = Acknowledge | Resolve | Snooze | Reassign | AddNote | ExpireAcknowledgement | RepeatHit


@dataclass(frozen=True, slots=True)
class Decision:
    """Column changes for the alert row and the event to append (past tense)."""

    changes: dict[str, Any]
    event: str
    actor: str
    data: dict[str, Any] = field(default_factory=dict)


def _who(by: str) -> str:
    if not by or not by.strip():
        raise ValidationError("say who you are (--by)")
    return by.strip()


def decide(alert: AlertState, command: Command) -> Decision:
    match command:
        case Acknowledge(by=by, at=at, timeout_s=timeout_s):
            who = _who(by)
            if alert.state is State.ACKNOWLEDGED:
                raise Conflict(f"already acknowledged by {alert.acknowledged_by}")
            if alert.state is State.RESOLVED:
                raise Conflict("this alert is resolved; it cannot be acknowledged")
            expires = at + timedelta(seconds=timeout_s) if timeout_s else None
            return Decision(
                {
                    "state": State.ACKNOWLEDGED.value,
                    "acknowledged_at": at,
                    "acknowledged_by": who,
                    "ack_expires_at": expires,
                },
                "acknowledged",
                who,
                {"expires_at": expires.isoformat() if expires else None},
            )
        case Resolve(by=by, at=at, outcome=outcome, note=note):
            who = _who(by)
            if alert.state is State.RESOLVED:
                raise Conflict("this alert is already resolved")
            if not outcome:
                raise ValidationError(
                    "an outcome is needed to resolve: " + ", ".join(o.value for o in Outcome)
                )
            try:
                code = Outcome(outcome)
            except ValueError:
                raise ValidationError(
                    f"unknown outcome {outcome!r}; one of " + ", ".join(o.value for o in Outcome)
                ) from None
            return Decision(
                {
                    "state": State.RESOLVED.value,
                    "resolved_at": at,
                    "resolved_by": who,
                    "outcome": code.value,
                    "ack_expires_at": None,
                    "snoozed_until": None,
                },
                "resolved",
                who,
                {"outcome": code.value, "note": note},
            )
        case Snooze(by=by, at=at, until=until, reason=reason):
            who = _who(by)
            if alert.state is State.RESOLVED:
                raise Conflict("a resolved alert cannot be snoozed")
            if not reason or not reason.strip():
                raise ValidationError("a snooze needs a reason")
            limit = MAX_SNOOZE.get(alert.priority, timedelta(hours=1))
            if until <= at:
                raise ValidationError("a snooze must end in the future")
            if until - at > limit:
                raise ValidationError(
                    f"a {alert.priority} alert can be snoozed for at most {limit}"
                )
            return Decision(
                {"snoozed_until": until},
                "snoozed",
                who,
                {"until": until.isoformat(), "reason": reason.strip()},
            )
        case Reassign(by=by, at=_, to=to):
            who = _who(by)
            if alert.state is State.RESOLVED:
                raise Conflict("a resolved alert cannot be reassigned")
            if not to or not to.strip():
                raise ValidationError("reassign to whom?")
            return Decision(
                {"assignee": to.strip()},
                "reassigned",
                who,
                {"from": alert.assignee, "to": to.strip()},
            )
        case AddNote(by=by, at=_, text=text):
            who = _who(by)
            if not text or not text.strip():
                raise ValidationError("a note needs text")
            return Decision({}, "note_added", who, {"text": text.strip()})
        case ExpireAcknowledgement(at=at):
            if alert.state is not State.ACKNOWLEDGED or alert.ack_expires_at is None:
                raise Conflict("no acknowledgement to expire")
            if alert.ack_expires_at > at:
                raise Conflict("the acknowledgement has not expired yet")
            return Decision(
                {"state": State.OPEN.value, "ack_expires_at": None},
                "acknowledgement_expired",
                "escalation",
            )
        case RepeatHit(at=at):
            if alert.state is State.RESOLVED:
                raise Conflict("resolved: a new hit opens a new alert")
            return Decision({}, "updated", "rules")
    raise ValidationError(f"unknown command {command!r}")  # pragma: no cover
