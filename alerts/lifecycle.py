"""The alert lifecycle as a pure decision: ``handle(alert, command, now)`` returns the new
alert and the events that happened — or refuses, with a message a nurse can understand.
No clock, no I/O. Every stored path runs this decision: the rule stage (alerts/store.py),
a person's command (alerts/lifecycle_store.py) and escalation (alerts/escalation_store.py)
load the alert, call ``handle`` and persist what it returns. The model is in
alerts/alert.py, the commands in alerts/commands.py, the events in alerts/events.py.

* One alert per (patient, rule): the de-duplication key. A repeat hit updates count,
  latest and worst value; a hit for a resolved alert is a new alert (pass ``None``).
* States: open → acknowledged → resolved. Resolving needs an outcome code.
* Latching: when values return to normal the alert is marked ``condition_cleared`` and
  stays until a person resolves it — red as IEC 60601-1-8 requires, and amber and
  technical too: Homeward never closes a clinical alert on its own, and every closed
  alert carries a person's outcome code. A new breach clears the mark and notifies the
  current level again: a breach is never hidden behind "condition cleared".
* Acknowledging pauses escalation; with the policy's timeout the acknowledgement
  expires (``AckTimeout``), the alert is open again and the current level is notified
  again. Snooze is explicit, time-limited, needs a reason, and ends by itself
  (``SnoozeOver``) or early (``Unsnooze``); either way escalation resumes where it paused.
* A hit that raises the priority (amber → red) withdraws an acknowledgement or snooze
  given for the lower priority and notifies the current level again; the store re-plans
  escalation under the new priority's policy (``AlertUpdated.previous_priority``).

``now`` judges what is in force (is it snoozed, has the acknowledgement expired); a
person's command carries ``at``, recorded as when they acted.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from datetime import datetime, timedelta

from alerts.alert import (
    MAX_NOTE_CHARS,
    MAX_SNOOZE,
    RANK,
    Alert,
    Direction,
    Hold,
    IllegalTransition,
    InvalidCommand,
    NoSuchAlert,
    Outcome,
    State,
)
from alerts.commands import (
    Acknowledge,
    AckTimeout,
    AddNote,
    AlertCommand,
    ConditionCleared,
    Escalate,
    RaiseOrUpdate,
    Reassign,
    Resolve,
    Snooze,
    SnoozeOver,
    Unsnooze,
)
from alerts.events import (
    AcknowledgementExpired,
    AlertAcknowledged,
    AlertEscalated,
    AlertRaised,
    AlertReassigned,
    AlertResolved,
    AlertSnoozed,
    AlertUnsnoozed,
    AlertUpdated,
    ConditionClearedEvent,
    Event,
    NoteAdded,
    NotificationRequested,
    SnoozeEnded,
)
from alerts.rules.types import Priority

_VERB: dict[type, str] = {
    ConditionCleared: "mark as cleared",
    Acknowledge: "acknowledge",
    Resolve: "resolve",
    Snooze: "snooze",
    Unsnooze: "end the snooze of",
    Reassign: "reassign",
    AddNote: "add a note to",
    AckTimeout: "expire the acknowledgement of",
    SnoozeOver: "end the snooze of",
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
        case SnoozeOver():
            if alert.snoozed_until is None or alert.is_snoozed(now):
                raise IllegalTransition("This alert's snooze has not run out.")
            ended = alert.snoozed_until
            new = replace(alert, snoozed_until=None, updated_at=now)
            return new, [SnoozeEnded(alert.id, now, "escalation", ended)]
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
    if c.priority not in RANK:
        raise InvalidCommand(f"Unknown priority {c.priority!r}: red, amber or technical.")
    priority = Priority(c.priority)
    if not c.rule_id:
        raise InvalidCommand("A rule hit needs a rule id.")
    if c.value is not None and not math.isfinite(c.value):
        raise InvalidCommand(f"The value {c.value} is not a number.")
    if alert is None:
        new = Alert(
            c.alert_id,
            c.patient_id,
            c.rule_id,
            priority,
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
            priority=priority,
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
    upgraded = RANK[priority] > RANK[alert.priority]
    new = replace(
        alert,
        count=alert.count + 1,
        worst_value=_worse(alert.direction or c.direction, alert.worst_value, c.value),
        condition_cleared=False,
        priority=priority if upgraded else alert.priority,
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
            reason = f"priority raised from {alert.priority} to {priority}"
            events.append(_notify(alert, now, reason))
    elif alert.condition_cleared and alert.notified:  # a new breach after the recovery
        events.append(_notify(alert, now, "breached again after the condition had cleared"))
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
