"""The alert lifecycle (DESIGN §4) as a pure decision: ``handle(alert, command, now)``
returns the new alert and the events that happened — or refuses, with a message a nurse
can understand. No clock, no I/O: the store persists the alert and appends the events.

* One alert per (patient, rule): the de-duplication key. A repeat hit updates count,
  latest and worst value; a hit for a resolved alert is a new alert (pass ``None``).
* States: open → acknowledged → resolved. Resolving needs an outcome code.
* Latching: when values return to normal the alert is marked ``condition_cleared`` and
  stays until a person resolves it — red as IEC 60601-1-8 requires, and amber and
  technical too: Homeward never closes a clinical alert on its own, and every closed
  alert carries a person's outcome code.
* Acknowledging pauses escalation; with the policy's timeout the acknowledgement
  expires (``AckTimeout``), the alert is open again and the current level is notified
  again (PagerDuty). Snooze is explicit, time-limited, needs a reason, and ends by itself.
* A hit that raises the priority (amber → red) withdraws an acknowledgement or snooze
  given for the lower priority, and notifies the current level again.

``now`` judges what is in force (is it snoozed, has the acknowledgement expired); a
person's command carries ``at``, recorded as when they acted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Literal

from homeward.errors import Conflict, ValidationError

Priority = Literal["red", "amber", "technical"]
Direction = Literal["high", "low"]
AlertId = int | str
_RANK: dict[str, int] = {"technical": 0, "amber": 1, "red": 2}
_PRIORITY: dict[str, Priority] = {"red": "red", "amber": "amber", "technical": "technical"}


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
    # The team's action (a visit, rapid response, a medication change) kept the patient at
    # home: the team's judgement, reported as such (docs/outcomes.md).
    ADMISSION_AVOIDED = "admission_avoided"
    FALSE_READING = "false_reading"


MAX_SNOOZE: dict[str, timedelta] = {
    "red": timedelta(hours=1),
    "amber": timedelta(hours=24),
    "technical": timedelta(hours=72),
}
MAX_NOTE_CHARS = 4000


class IllegalTransition(Conflict):
    """The alert's state does not allow this command."""


class NoSuchAlert(IllegalTransition):
    """A command for an alert that does not exist."""


class InvalidCommand(ValidationError):
    """The command itself is incomplete or wrong (no outcome, no reason, bad time...)."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A stretch of time escalation waited: while acknowledged or snoozed. ``end`` is when
    it ends or ended (an acknowledgement's expiry, a snooze's end); ``None``: no limit."""

    reason: Literal["acknowledged", "snoozed"]
    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class Alert:
    id: AlertId
    patient_id: int | str
    rule_id: str
    priority: Priority
    opened_at: datetime
    state: State = State.OPEN
    direction: Direction | None = None  # which way is worse, for worst_value
    message: str = ""
    count: int = 1
    first_value: float | None = None
    latest_value: float | None = None
    worst_value: float | None = None
    first_measured_at: datetime | None = None
    latest_measured_at: datetime | None = None
    condition_cleared: bool = False  # values back to normal; the alert is latched
    ack_timeout_s: float | None = None  # from the escalation policy snapshot
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    ack_expires_at: datetime | None = None
    snoozed_until: datetime | None = None
    snoozed_by: str | None = None
    snooze_reason: str | None = None
    assignee: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    outcome: Outcome | None = None
    last_step_no: int = 0  # escalation steps sent so far (by number)
    escalation_level: int = 0
    notified: tuple[str, ...] = ()  # the targets of the current level
    holds: tuple[Hold, ...] = ()
    updated_at: datetime | None = None

    def is_snoozed(self, now: datetime) -> bool:
        return self.snoozed_until is not None and now < self.snoozed_until

    def ack_expired(self, now: datetime) -> bool:
        return (
            self.state is State.ACKNOWLEDGED
            and self.ack_expires_at is not None
            and self.ack_expires_at <= now
        )


# Commands (imperative). A person's commands say who and when.


@dataclass(frozen=True, slots=True)
class RaiseOrUpdate:
    patient_id: int | str
    rule_id: str
    priority: Priority
    value: float | None
    measured_at: datetime
    message: str = ""
    direction: Direction | None = None
    alert_id: AlertId = 0  # for a new alert; the store may assign its own
    ack_timeout_s: float | None = None  # the policy's, snapshotted on a new alert


@dataclass(frozen=True, slots=True)
class ConditionCleared:
    value: float | None
    measured_at: datetime


@dataclass(frozen=True, slots=True)
class Acknowledge:
    by: str
    at: datetime
    timeout_s: float | None = None  # default: the alert's policy snapshot


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
class Unsnooze:
    """A person ends a snooze early (a snooze that runs out simply ends)."""

    by: str
    at: datetime


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
class AckTimeout:
    """The acknowledgement's time is up (at ``now``): open again, escalation resumes."""


@dataclass(frozen=True, slots=True)
class Escalate:
    """Send one planned escalation step (see alerts/escalation.py ``next_due_step``)."""

    step_no: int
    level: int
    targets: tuple[str, ...]


PersonCommand = Acknowledge | Resolve | Snooze | Unsnooze | Reassign | AddNote
AlertCommand = PersonCommand | RaiseOrUpdate | ConditionCleared | AckTimeout | Escalate


# Events (past tense). ``by`` is a staff id, or "rules" / "escalation" for the system.


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


@dataclass(frozen=True, slots=True)
class AlertUpdated(Event):
    kind: ClassVar[str] = "updated"
    value: float | None
    measured_at: datetime
    count: int
    worst_value: float | None
    priority: Priority
    previous_priority: Priority | None = None  # set when this hit raised the priority


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
    kind: ClassVar[str] = "unsnoozed"


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
    kind: ClassVar[str] = "notification_requested"
    targets: tuple[str, ...]
    reason: str


_VERB: dict[type, str] = {
    ConditionCleared: "mark as cleared",
    Acknowledge: "acknowledge",
    Resolve: "resolve",
    Snooze: "snooze",
    Unsnooze: "end the snooze of",
    Reassign: "reassign",
    AddNote: "add a note to",
    AckTimeout: "expire the acknowledgement of",
    Escalate: "escalate",
}


def handle(alert: Alert | None, command: AlertCommand, now: datetime) -> tuple[Alert, list[Event]]:
    """Apply ``command`` to ``alert`` (``None``: no unresolved alert for the key)."""
    for value in (now, *(getattr(command, f.name) for f in fields(command))):
        if isinstance(value, datetime) and value.utcoffset() is None:
            raise InvalidCommand(f"The time {value} has no time zone.")
    if isinstance(command, RaiseOrUpdate):
        return _raise_or_update(alert, command, now)
    verb = _VERB[type(command)]
    if alert is None:
        raise NoSuchAlert(f"There is no alert to {verb}.")
    if alert.state is State.RESOLVED and not isinstance(command, AddNote):
        raise IllegalTransition(
            f"This alert is already resolved ({alert.outcome}), so you cannot {verb} it. "
            "You can still add a note."
        )
    match command:
        case ConditionCleared():
            return _cleared(alert, command, now)
        case Acknowledge():
            return _acknowledge(alert, command, now)
        case Resolve():
            return _resolve(alert, command)
        case Snooze():
            return _snooze(alert, command, now)
        case Unsnooze(by=by, at=at):
            who = _who(by)
            if not alert.is_snoozed(now):
                raise IllegalTransition("This alert is not snoozed.")
            holds = _close(alert.holds, at, "snoozed")
            new = replace(alert, snoozed_until=None, holds=holds, updated_at=at)
            return new, [AlertUnsnoozed(alert.id, at, who)]
        case Reassign(by=by, at=at, to=to):
            who, to = _who(by), to.strip()
            if not to:
                raise InvalidCommand("Reassign to whom? Give a staff id.")
            if to == alert.assignee:
                raise IllegalTransition(f"This alert is already assigned to {to}.")
            event = AlertReassigned(alert.id, at, who, alert.assignee, to)
            return replace(alert, assignee=to, updated_at=at), [event]
        case AddNote(by=by, at=at, text=text):
            who, text = _who(by), text.strip()
            if not text or len(text) > MAX_NOTE_CHARS:
                raise InvalidCommand(f"A note needs text (at most {MAX_NOTE_CHARS} characters).")
            return replace(alert, updated_at=at), [NoteAdded(alert.id, at, who, text)]
        case AckTimeout():
            return _ack_timeout(alert, now)
        case Escalate():
            return _escalate(alert, command, now)
    raise InvalidCommand(f"Unknown command {command!r}.")  # pragma: no cover


def _hm(when: datetime | None) -> str:
    return f"{when:%d %b %H:%M %Z}".strip() if when else "?"


def _who(by: str) -> str:
    if not by or not by.strip():
        raise InvalidCommand("Say who you are: a staff id is needed.")
    return by.strip()


def _close(holds: tuple[Hold, ...], at: datetime, reason: str | None = None) -> tuple[Hold, ...]:
    """End the holds still running at ``at`` (of one reason, or all)."""
    return tuple(
        replace(h, end=max(h.start, at))
        if (reason is None or h.reason == reason) and (h.end is None or h.end > at)
        else h
        for h in holds
    )


def _worse(direction: Direction | None, old: float | None, new: float | None) -> float | None:
    if new is None or old is None:
        return old if new is None else new
    if direction == "high":
        return max(old, new)
    return min(old, new) if direction == "low" else new


def _raise_or_update(
    alert: Alert | None, c: RaiseOrUpdate, now: datetime
) -> tuple[Alert, list[Event]]:
    if c.priority not in _RANK:
        raise InvalidCommand(f"Unknown priority {c.priority!r}: red, amber or technical.")
    if not c.rule_id:
        raise InvalidCommand("A rule hit needs a rule id.")
    if c.value is not None and not math.isfinite(c.value):
        raise InvalidCommand(f"The value {c.value} is not a number.")
    if alert is None:
        new = Alert(
            c.alert_id,
            c.patient_id,
            c.rule_id,
            c.priority,
            now,
            direction=c.direction,
            message=c.message,
            first_value=c.value,
            latest_value=c.value,
            worst_value=c.value,
            first_measured_at=c.measured_at,
            latest_measured_at=c.measured_at,
            ack_timeout_s=c.ack_timeout_s,
            updated_at=now,
        )
        raised = AlertRaised(
            alert_id=new.id,
            at=now,
            by="rules",
            patient_id=c.patient_id,
            rule_id=c.rule_id,
            priority=c.priority,
            value=c.value,
            measured_at=c.measured_at,
            message=c.message,
        )
        return new, [raised]
    if alert.state is State.RESOLVED:
        raise IllegalTransition("This alert is resolved; a new reading opens a new alert.")
    if (alert.patient_id, alert.rule_id) != (c.patient_id, c.rule_id):
        raise InvalidCommand(
            f"This reading is for patient {c.patient_id}, rule {c.rule_id}; the alert is for "
            f"patient {alert.patient_id}, rule {alert.rule_id}."
        )
    newer = alert.latest_measured_at is None or c.measured_at >= alert.latest_measured_at
    upgraded = _RANK[c.priority] > _RANK[alert.priority]
    new = replace(
        alert,
        count=alert.count + 1,
        worst_value=_worse(alert.direction or c.direction, alert.worst_value, c.value),
        condition_cleared=False,
        priority=c.priority if upgraded else alert.priority,
        updated_at=now,
        latest_value=c.value if newer else alert.latest_value,
        latest_measured_at=c.measured_at if newer else alert.latest_measured_at,
        message=c.message if newer else alert.message,
    )
    events: list[Event] = [
        AlertUpdated(
            alert_id=alert.id,
            at=now,
            by="rules",
            value=c.value,
            measured_at=c.measured_at,
            count=new.count,
            worst_value=new.worst_value,
            priority=new.priority,
            previous_priority=alert.priority if upgraded else None,
        )
    ]
    if upgraded:  # an acknowledgement or snooze was given for the lower priority
        new = replace(
            new,
            state=State.OPEN,
            ack_expires_at=None,
            snoozed_until=None,
            holds=_close(alert.holds, now),
        )
        if alert.notified:
            reason = f"priority raised from {alert.priority} to {c.priority}"
            events.append(_notify(alert, now, reason))
    return new, events


def _notify(alert: Alert, now: datetime, reason: str) -> NotificationRequested:
    return NotificationRequested(alert.id, now, "escalation", alert.notified, reason)


def _cleared(alert: Alert, c: ConditionCleared, now: datetime) -> tuple[Alert, list[Event]]:
    if alert.condition_cleared:
        return alert, []  # already marked: nothing new happened
    event = ConditionClearedEvent(alert.id, now, "rules", c.value, c.measured_at)
    return replace(alert, condition_cleared=True, updated_at=now), [event]


def _acknowledge(alert: Alert, c: Acknowledge, now: datetime) -> tuple[Alert, list[Event]]:
    who = _who(c.by)
    if alert.state is State.ACKNOWLEDGED and not alert.ack_expired(now):
        raise IllegalTransition(f"This alert is already acknowledged by {alert.acknowledged_by}.")
    timeout = c.timeout_s if c.timeout_s is not None else alert.ack_timeout_s
    if timeout is not None and timeout <= 0:
        raise InvalidCommand("An acknowledgement timeout must be more than 0 seconds.")
    expires = c.at + timedelta(seconds=timeout) if timeout else None
    new = replace(
        alert,
        state=State.ACKNOWLEDGED,
        acknowledged_at=c.at,
        acknowledged_by=who,
        ack_expires_at=expires,
        holds=(*alert.holds, Hold("acknowledged", c.at, expires)),
        updated_at=c.at,
    )
    return new, [AlertAcknowledged(alert.id, c.at, who, expires)]


def _resolve(alert: Alert, c: Resolve) -> tuple[Alert, list[Event]]:
    who = _who(c.by)
    codes = ", ".join(o.value for o in Outcome)
    if not c.outcome:
        raise InvalidCommand(f"An outcome is needed to resolve this alert: one of {codes}.")
    try:
        outcome = Outcome(c.outcome)
    except ValueError:
        raise InvalidCommand(f"{c.outcome!r} is not an outcome code; use one of {codes}.") from None
    new = replace(
        alert,
        state=State.RESOLVED,
        resolved_at=c.at,
        resolved_by=who,
        outcome=outcome,
        ack_expires_at=None,
        snoozed_until=None,
        holds=_close(alert.holds, c.at),
        updated_at=c.at,
    )
    note = c.note.strip() if c.note and c.note.strip() else None
    return new, [AlertResolved(alert.id, c.at, who, outcome, note)]


def _snooze(alert: Alert, c: Snooze, now: datetime) -> tuple[Alert, list[Event]]:
    who = _who(c.by)
    if not c.reason or not c.reason.strip():
        raise InvalidCommand("A snooze needs a reason (e.g. 'patient at the surgery').")
    if c.until <= c.at or c.until <= now:
        raise InvalidCommand("A snooze must end in the future.")
    limit = MAX_SNOOZE[alert.priority]
    if c.until - c.at > limit:
        hours = limit.total_seconds() / 3600
        raise InvalidCommand(
            f"A {alert.priority} alert can be snoozed for at most {hours:g} "
            f"hour{'s' if hours != 1 else ''}."
        )
    holds = _close(alert.holds, c.at, "snoozed")  # a new snooze replaces a running one
    new = replace(
        alert,
        snoozed_until=c.until,
        snoozed_by=who,
        snooze_reason=c.reason.strip(),
        holds=(*holds, Hold("snoozed", c.at, c.until)),
        updated_at=c.at,
    )
    event = AlertSnoozed(alert.id, c.at, who, c.until, c.reason.strip())
    return new, [event]


def _ack_timeout(alert: Alert, now: datetime) -> tuple[Alert, list[Event]]:
    if alert.state is not State.ACKNOWLEDGED:
        raise IllegalTransition(
            "This alert is not acknowledged; there is no acknowledgement to expire."
        )
    if alert.ack_expires_at is None:
        raise IllegalTransition("This acknowledgement has no time limit; it does not expire.")
    if alert.ack_expires_at > now:
        raise IllegalTransition(
            f"The acknowledgement has not expired yet (until {_hm(alert.ack_expires_at)})."
        )
    new = replace(alert, state=State.OPEN, ack_expires_at=None, updated_at=now)
    events: list[Event] = [
        AcknowledgementExpired(alert.id, now, "escalation", alert.acknowledged_by)
    ]
    if alert.notified:
        events.append(_notify(alert, now, f"acknowledgement by {alert.acknowledged_by} expired"))
    return new, events


def _escalate(alert: Alert, c: Escalate, now: datetime) -> tuple[Alert, list[Event]]:
    if c.step_no < 1 or c.level < 1 or not c.targets:
        raise InvalidCommand("An escalation step needs a number, a level and targets.")
    if alert.state is State.ACKNOWLEDGED:
        raise IllegalTransition(
            f"Acknowledged by {alert.acknowledged_by}: escalation waits until the "
            "acknowledgement expires."
        )
    if alert.is_snoozed(now):
        raise IllegalTransition(f"Snoozed until {_hm(alert.snoozed_until)}: escalation waits.")
    if c.step_no <= alert.last_step_no:
        raise IllegalTransition(f"Escalation step {c.step_no} was already sent.")
    new = replace(
        alert, last_step_no=c.step_no, escalation_level=c.level, notified=c.targets, updated_at=now
    )
    sent = AlertEscalated(alert.id, now, "escalation", c.step_no, c.level, c.targets)
    return new, [sent, _notify(new, now, f"escalation level {c.level}")]


# The row-level form used by alerts/lifecycle_store.py and alerts/escalation_store.py: the
# same rules, answered as column changes and one event for the ``alerts`` row.


@dataclass(frozen=True, slots=True)
class ExpireAcknowledgement:
    at: datetime


@dataclass(frozen=True, slots=True)
class RepeatHit:
    at: datetime


Command = PersonCommand | ExpireAcknowledgement | RepeatHit


@dataclass(frozen=True, slots=True)
class AlertState:
    state: State
    priority: str
    acknowledged_by: str | None = None
    ack_expires_at: datetime | None = None
    snoozed_until: datetime | None = None
    assignee: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Column changes for the alert row and the event to append (past tense)."""

    changes: dict[str, Any]
    event: str
    actor: str
    data: dict[str, Any] = field(default_factory=dict)


_COLUMNS = (  # the lifecycle columns of the ``alerts`` row
    "state",
    "acknowledged_at",
    "acknowledged_by",
    "ack_expires_at",
    "resolved_at",
    "resolved_by",
    "outcome",
    "snoozed_until",
    "assignee",
)


def decide(row: AlertState, command: Command) -> Decision:
    """``handle`` for one stored row: its time is the command's ``at``."""
    if isinstance(command, RepeatHit):
        if row.state is State.RESOLVED:
            raise IllegalTransition("This alert is resolved; a new reading opens a new alert.")
        return Decision({}, "updated", "rules")
    priority = _PRIORITY.get(row.priority)
    if priority is None:
        raise InvalidCommand(f"Unknown priority {row.priority!r}.")
    old = Alert(
        0,
        0,
        "-",
        priority,
        command.at,
        state=row.state,
        acknowledged_by=row.acknowledged_by,
        ack_expires_at=row.ack_expires_at,
        snoozed_until=row.snoozed_until,
        assignee=row.assignee,
    )
    if isinstance(command, ExpireAcknowledgement):
        new, events = handle(old, AckTimeout(), command.at)
    else:
        new, events = handle(old, command, command.at)
    changes = {
        c: _json_col(getattr(new, c)) for c in _COLUMNS if getattr(new, c) != getattr(old, c)
    }
    return Decision(changes, events[0].kind, events[0].by, events[0].data())


def _json_col(value: Any) -> Any:
    return str(value) if isinstance(value, StrEnum) else value
