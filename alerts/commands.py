"""Commands to an alert (imperative): what the rules, escalation or a person ask of it.
A person's command says who (``by``, a staff id) and when (``at``, recorded as when they
acted). alerts/lifecycle.py ``handle`` decides each one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from alerts.alert import AlertId, Direction
from alerts.rules.types import Priority


@dataclass(frozen=True, slots=True)
class RaiseOrUpdate:
    """A rule hit: raises the alert, or updates the unresolved one for (patient, rule)."""

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
    """Values are back inside the rule: the alert is marked, and latches."""

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
    """A person ends a snooze early (a snooze that runs out ends by ``SnoozeOver``)."""

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
    """The acknowledgement's time is up (at ``now``): open again, the current level is
    notified again, escalation resumes where it paused."""


@dataclass(frozen=True, slots=True)
class SnoozeOver:
    """The snooze's time is up (at ``now``): escalation resumes where it paused."""


@dataclass(frozen=True, slots=True)
class Escalate:
    """Send one planned escalation step (see alerts/escalation.py ``next_due_step``)."""

    step_no: int
    level: int
    targets: tuple[str, ...]


PersonCommand = Acknowledge | Resolve | Snooze | Unsnooze | Reassign | AddNote
SystemCommand = RaiseOrUpdate | ConditionCleared | AckTimeout | SnoozeOver | Escalate
AlertCommand = PersonCommand | SystemCommand
