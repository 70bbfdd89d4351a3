"""The alert: one clinical concern for one patient and rule, as the lifecycle sees it.

An ``Alert`` is a value (frozen): the decision (alerts/lifecycle.py) returns a new one and
the stores persist it (alerts/alert_store.py maps it to and from the ``alerts`` row).
States: open → acknowledged → resolved; two flags sit on top: snoozed (until a time) and
condition cleared (values back to normal, the alert latched). ``holds`` are the stretches
of time escalation waited (acknowledged or snoozed): the escalation clock stands still
during them (alerts/escalation.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from alerts.rules.types import Priority
from homeward.errors import Conflict, ValidationError

Direction = Literal["high", "low"]
AlertId = int | str
RANK: dict[Priority, int] = {Priority.TECHNICAL: 0, Priority.AMBER: 1, Priority.RED: 2}


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


MAX_SNOOZE: dict[Priority, timedelta] = {
    Priority.RED: timedelta(hours=1),
    Priority.AMBER: timedelta(hours=24),
    Priority.TECHNICAL: timedelta(hours=72),
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

    def snooze_ran_out(self, now: datetime) -> bool:
        """A snooze whose time has come, not yet ended (``SnoozeOver`` ends it)."""
        return self.snoozed_until is not None and self.snoozed_until <= now

    def ack_expired(self, now: datetime) -> bool:
        return (
            self.state is State.ACKNOWLEDGED
            and self.ack_expires_at is not None
            and self.ack_expires_at <= now
        )
