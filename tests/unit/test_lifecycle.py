"""The alert state machine, exhaustively: every situation × every command, typed as a table;
latching, repeat hits, snooze limits, acknowledgement timeouts, and the row-level form."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.alert import (
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
from alerts.lifecycle import handle
from alerts.rules.types import Priority
from homeward.errors import Conflict, ValidationError

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
RULE = "threshold:systolic_bp:severe"
L1 = ("rota:monitoring_nurse",)


def hit(
    value: float = 184.0, at: datetime = NOW, priority: Priority = Priority.RED
) -> RaiseOrUpdate:
    return RaiseOrUpdate(7, RULE, priority, value, at, f"systolic {value:g}", "high")


BASE = Alert(
    42,
    7,
    RULE,
    Priority.RED,
    NOW - 10 * MIN,
    direction="high",
    message="systolic 184",
    first_value=184.0,
    latest_value=184.0,
    worst_value=184.0,
    first_measured_at=NOW - 10 * MIN,
    latest_measured_at=NOW - 10 * MIN,
    last_step_no=1,
    escalation_level=1,
    notified=L1,
)
ACKED = replace(
    BASE,
    state=State.ACKNOWLEDGED,
    acknowledged_at=NOW - 5 * MIN,
    acknowledged_by="nurse.z",
    ack_expires_at=NOW + 10 * MIN,
    holds=(Hold("acknowledged", NOW - 5 * MIN, NOW + 10 * MIN),),
)
SITUATIONS: dict[str, Alert | None] = {
    "none": None,
    "open": BASE,
    "snoozed": replace(
        BASE,
        snoozed_until=NOW + 20 * MIN,
        snooze_reason="at the surgery",
        holds=(Hold("snoozed", NOW - 10 * MIN, NOW + 20 * MIN),),
    ),
    "cleared": replace(BASE, condition_cleared=True),
    "acknowledged": ACKED,
    "ack_expired": replace(
        ACKED,
        ack_expires_at=NOW - MIN,
        holds=(Hold("acknowledged", NOW - 5 * MIN, NOW - MIN),),
    ),
    "resolved": replace(
        BASE, state=State.RESOLVED, outcome=Outcome.ADVICE_GIVEN, resolved_by="nurse.z"
    ),
}
COMMANDS: dict[str, AlertCommand] = {
    "raise": hit(190.0),
    "clear": ConditionCleared(128.0, NOW),
    "acknowledge": Acknowledge("nurse.a", NOW, timeout_s=900),
    "resolve": Resolve("nurse.a", NOW, "advice_given", "phoned; repeat reading fine"),
    "snooze": Snooze("nurse.a", NOW, NOW + 30 * MIN, "patient at the surgery"),
    "unsnooze": Unsnooze("nurse.a", NOW),
    "reassign": Reassign("nurse.a", NOW, "matron.b"),
    "note": AddNote("nurse.a", NOW, "left a voicemail"),
    "ack_timeout": AckTimeout(),
    "snooze_over": SnoozeOver(),
    "escalate": Escalate(2, 2, ("role:community_matron",)),
}


@dataclass(frozen=True)
class Allowed:
    state: State
    events: tuple[type[Event], ...]


@dataclass(frozen=True)
class Refused:
    error: type[Exception]


Expected = Allowed | Refused
OPN, ACK, RES = State.OPEN, State.ACKNOWLEDGED, State.RESOLVED
NOPE = Refused(IllegalTransition)
NOTIFY = NotificationRequested

# situation → command → the resulting state and events, or the refusal
MATRIX: dict[str, dict[str, Expected]] = {
    "none": {
        "raise": Allowed(OPN, (AlertRaised,)),
        **{name: Refused(NoSuchAlert) for name in COMMANDS if name != "raise"},
    },
    "open": {
        "raise": Allowed(OPN, (AlertUpdated,)),
        "clear": Allowed(OPN, (ConditionClearedEvent,)),
        "acknowledge": Allowed(ACK, (AlertAcknowledged,)),
        "resolve": Allowed(RES, (AlertResolved,)),
        "snooze": Allowed(OPN, (AlertSnoozed,)),
        "unsnooze": NOPE,
        "reassign": Allowed(OPN, (AlertReassigned,)),
        "note": Allowed(OPN, (NoteAdded,)),
        "ack_timeout": NOPE,
        "snooze_over": NOPE,
        "escalate": Allowed(OPN, (AlertEscalated, NOTIFY)),
    },
    "snoozed": {
        "raise": Allowed(OPN, (AlertUpdated,)),
        "clear": Allowed(OPN, (ConditionClearedEvent,)),
        "acknowledge": Allowed(ACK, (AlertAcknowledged,)),
        "resolve": Allowed(RES, (AlertResolved,)),
        "snooze": Allowed(OPN, (AlertSnoozed,)),
        "unsnooze": Allowed(OPN, (AlertUnsnoozed,)),
        "reassign": Allowed(OPN, (AlertReassigned,)),
        "note": Allowed(OPN, (NoteAdded,)),
        "ack_timeout": NOPE,
        "snooze_over": NOPE,
        "escalate": NOPE,
    },
    "cleared": {  # latched: still open, still escalating, until a person resolves it
        "raise": Allowed(OPN, (AlertUpdated, NOTIFY)),  # a new breach: told again
        "clear": Allowed(OPN, ()),
        "acknowledge": Allowed(ACK, (AlertAcknowledged,)),
        "resolve": Allowed(RES, (AlertResolved,)),
        "snooze": Allowed(OPN, (AlertSnoozed,)),
        "unsnooze": NOPE,
        "reassign": Allowed(OPN, (AlertReassigned,)),
        "note": Allowed(OPN, (NoteAdded,)),
        "ack_timeout": NOPE,
        "snooze_over": NOPE,
        "escalate": Allowed(OPN, (AlertEscalated, NOTIFY)),
    },
    "acknowledged": {
        "raise": Allowed(ACK, (AlertUpdated,)),
        "clear": Allowed(ACK, (ConditionClearedEvent,)),
        "acknowledge": NOPE,
        "resolve": Allowed(RES, (AlertResolved,)),
        "snooze": Allowed(ACK, (AlertSnoozed,)),
        "unsnooze": NOPE,
        "reassign": Allowed(ACK, (AlertReassigned,)),
        "note": Allowed(ACK, (NoteAdded,)),
        "ack_timeout": NOPE,
        "snooze_over": NOPE,
        "escalate": NOPE,
    },
    "ack_expired": {  # its time is up but AckTimeout has not been applied yet
        "raise": Allowed(ACK, (AlertUpdated,)),
        "clear": Allowed(ACK, (ConditionClearedEvent,)),
        "acknowledge": Allowed(ACK, (AlertAcknowledged,)),
        "resolve": Allowed(RES, (AlertResolved,)),
        "snooze": Allowed(ACK, (AlertSnoozed,)),
        "unsnooze": NOPE,
        "reassign": Allowed(ACK, (AlertReassigned,)),
        "note": Allowed(ACK, (NoteAdded,)),
        "ack_timeout": Allowed(OPN, (AcknowledgementExpired, NOTIFY)),
        "snooze_over": NOPE,
        "escalate": NOPE,
    },
    "resolved": {
        **{name: NOPE for name in COMMANDS if name != "note"},
        "note": Allowed(RES, (NoteAdded,)),
    },
}
CASES = [(situation, name) for situation in SITUATIONS for name in COMMANDS]


def test_the_matrix_covers_every_situation_and_command() -> None:
    assert set(MATRIX) == set(SITUATIONS)
    assert all(set(row) == set(COMMANDS) for row in MATRIX.values())
    assert {s.state for s in SITUATIONS.values() if s} == set(State)


@pytest.mark.parametrize(("situation", "command"), CASES)
def test_situation_by_command(situation: str, command: str) -> None:
    expected = MATRIX[situation][command]
    alert = SITUATIONS[situation]
    if isinstance(expected, Refused):
        with pytest.raises(expected.error) as refused:
            handle(alert, COMMANDS[command], NOW)
        assert isinstance(refused.value, Conflict | ValidationError)
        assert str(refused.value)[0].isupper()  # a sentence a nurse can read
        return
    new, events = handle(alert, COMMANDS[command], NOW)
    assert new.state is expected.state
    assert tuple(type(e) for e in events) == expected.events
    assert all(e.alert_id == new.id for e in events)
    json.dumps([e.data() for e in events])  # every event can be stored as it is
    if alert is not None and events:
        assert (new.patient_id, new.rule_id) == (alert.patient_id, alert.rule_id)


def test_a_new_alert_starts_from_the_hit() -> None:
    new, [raised] = handle(None, replace(hit(), alert_id=99, ack_timeout_s=600), NOW)
    assert (new.id, new.state, new.count, new.opened_at) == (99, State.OPEN, 1, NOW)
    assert (new.first_value, new.latest_value, new.worst_value) == (184.0, 184.0, 184.0)
    assert new.ack_timeout_s == 600
    assert isinstance(raised, AlertRaised)
    assert raised.by == "rules"


@pytest.mark.parametrize(
    ("direction", "values", "worst"),
    [
        ("high", [184.0, 190.0, 186.0], 190.0),  # systolic: higher is worse
        ("low", [90.0, 87.0, 89.0], 87.0),  # SpO2: lower is worse
        (None, [3.0, 5.0, 4.0], 4.0),  # no direction: the latest
    ],
)
def test_repeat_hits_update_count_latest_and_worst(
    direction: Direction | None, values: list[float], worst: float
) -> None:
    alert: Alert | None = None
    for i, value in enumerate(values):
        command = replace(hit(value, NOW + i * MIN), direction=direction)
        alert, _ = handle(alert, command, NOW + i * MIN)
    assert alert is not None
    assert (alert.count, alert.first_value, alert.latest_value) == (3, values[0], values[-1])
    assert alert.worst_value == worst
    assert alert.latest_measured_at == NOW + 2 * MIN


def test_a_late_reading_counts_but_does_not_become_the_latest() -> None:
    alert, _ = handle(BASE, hit(200.0, NOW - 20 * MIN), NOW)
    assert (alert.count, alert.latest_value, alert.worst_value) == (2, 184.0, 200.0)


def test_a_hit_for_another_patient_or_rule_is_refused() -> None:
    with pytest.raises(InvalidCommand, match="patient 8"):
        handle(BASE, replace(hit(), patient_id=8), NOW)
    with pytest.raises(InvalidCommand, match="rule"):
        handle(BASE, replace(hit(), rule_id="news2"), NOW)


@pytest.mark.parametrize("priority", list(Priority))
def test_every_priority_latches_until_a_person_resolves_it(priority: Priority) -> None:
    alert = replace(BASE, priority=priority)
    cleared, [event] = handle(alert, ConditionCleared(120.0, NOW), NOW)
    assert cleared.state is State.OPEN
    assert cleared.condition_cleared
    assert isinstance(event, ConditionClearedEvent)
    assert event.latched
    assert handle(cleared, ConditionCleared(118.0, NOW + MIN), NOW + MIN) == (cleared, [])
    with pytest.raises(InvalidCommand, match="outcome is needed"):
        handle(cleared, Resolve("nurse.a", NOW, None), NOW)
    again, _ = handle(cleared, hit(181.0, NOW + MIN), NOW + MIN)
    assert not again.condition_cleared  # breached again: no longer cleared


def test_a_higher_priority_withdraws_an_acknowledgement_given_for_a_lower_one() -> None:
    amber = replace(ACKED, priority=Priority.AMBER, snoozed_until=NOW + 60 * MIN)
    new, events = handle(amber, hit(priority=Priority.RED), NOW)
    assert (new.priority, new.state, new.snoozed_until) == ("red", State.OPEN, None)
    assert all(h.end is not None and h.end <= NOW for h in new.holds)
    updated, notify = events
    assert isinstance(updated, AlertUpdated)
    assert updated.previous_priority == "amber"
    assert isinstance(notify, NotificationRequested)
    assert notify.targets == L1
    lower, [event] = handle(BASE, hit(priority=Priority.AMBER), NOW)  # never downgraded
    assert lower.priority == "red"
    assert isinstance(event, AlertUpdated)


@pytest.mark.parametrize(
    ("priority", "longest"),
    [
        ("red", timedelta(hours=1)),
        ("amber", timedelta(hours=24)),
        ("technical", timedelta(hours=72)),
    ],
)
def test_snooze_is_time_limited_by_priority(priority: Priority, longest: timedelta) -> None:
    alert = replace(BASE, priority=priority)
    snoozed, _ = handle(alert, Snooze("n", NOW, NOW + longest, "reviewed by GP"), NOW)
    assert snoozed.is_snoozed(NOW)
    assert not snoozed.is_snoozed(NOW + longest)
    with pytest.raises(InvalidCommand, match="at most"):
        handle(alert, Snooze("n", NOW, NOW + longest + MIN, "reviewed by GP"), NOW)


def test_red_alerts_snooze_for_an_hour_at_most() -> None:
    """Hazard H2 (alarm fatigue) traces its snooze control to this test."""
    handle(BASE, Snooze("n", NOW, NOW + 60 * MIN, "reviewed by GP"), NOW)
    with pytest.raises(InvalidCommand, match="at most 1 hour"):
        handle(BASE, Snooze("n", NOW, NOW + 61 * MIN, "reviewed by GP"), NOW)
    with pytest.raises(InvalidCommand, match="needs a reason"):
        handle(BASE, Snooze("n", NOW, NOW + 30 * MIN, ""), NOW)


def test_double_acknowledgement_names_who_did_it() -> None:
    """Hazard H7 (duplicate alarms) traces this control here."""
    with pytest.raises(IllegalTransition, match=r"already acknowledged by nurse\.z"):
        handle(ACKED, Acknowledge("nurse.b", NOW), NOW)
    with pytest.raises(Conflict, match=r"already acknowledged by nurse\.z"):
        handle(ACKED, Acknowledge("nurse.b", NOW + MIN), NOW + MIN)


def test_a_snooze_ends_by_itself_and_a_new_one_replaces_the_old() -> None:
    snoozed, _ = handle(BASE, Snooze("n", NOW, NOW + 30 * MIN, "at the surgery"), NOW)
    with pytest.raises(IllegalTransition, match="not snoozed"):
        handle(snoozed, Unsnooze("n", NOW + 31 * MIN), NOW + 31 * MIN)
    handle(snoozed, Escalate(2, 2, ("role:gp",)), NOW + 30 * MIN)  # escalation may go on
    longer, _ = handle(snoozed, Snooze("n", NOW + 10 * MIN, NOW + 50 * MIN, "GP visiting"), NOW)
    assert [(h.start, h.end) for h in longer.holds] == [
        (NOW, NOW + 10 * MIN),
        (NOW + 10 * MIN, NOW + 50 * MIN),
    ]
    ended, _ = handle(longer, Unsnooze("n", NOW + 15 * MIN), NOW + 15 * MIN)
    assert ended.holds[-1].end == NOW + 15 * MIN
    assert not ended.is_snoozed(NOW + 15 * MIN)
    with pytest.raises(IllegalTransition, match="not run out"):
        handle(longer, SnoozeOver(), NOW + 49 * MIN)
    over, [event] = handle(longer, SnoozeOver(), NOW + 50 * MIN)  # recorded at its end
    assert (over.snoozed_until, over.holds) == (None, longer.holds)
    assert isinstance(event, SnoozeEnded)
    assert event.until == NOW + 50 * MIN


def test_a_new_breach_after_condition_cleared_notifies_the_current_level_again() -> None:
    cleared, _ = handle(BASE, ConditionCleared(130.0, NOW), NOW)
    again, events = handle(cleared, hit(182.0, NOW + MIN), NOW + MIN)
    assert not again.condition_cleared
    updated, notify = events
    assert isinstance(updated, AlertUpdated)
    assert isinstance(notify, NotificationRequested)
    assert (notify.targets, notify.reason) == (L1, "breached again after the condition had cleared")
    _, [only] = handle(again, hit(183.0, NOW + 2 * MIN), NOW + 2 * MIN)  # still breached
    assert isinstance(only, AlertUpdated)


def test_the_acknowledgement_timeout_comes_from_the_policy_snapshot() -> None:
    alert, _ = handle(None, replace(hit(), ack_timeout_s=600), NOW)
    acked, [event] = handle(alert, Acknowledge("nurse.a", NOW), NOW)
    assert isinstance(event, AlertAcknowledged)
    assert acked.ack_expires_at == event.expires_at == NOW + 10 * MIN
    with pytest.raises(IllegalTransition, match="not expired yet"):
        handle(acked, AckTimeout(), NOW + 9 * MIN)
    forever, _ = handle(BASE, Acknowledge("nurse.a", NOW), NOW)  # no timeout in the policy
    assert forever.ack_expires_at is None
    assert forever.holds[-1].end is None
    with pytest.raises(IllegalTransition, match="no time limit"):
        handle(forever, AckTimeout(), NOW + timedelta(days=7))


def test_an_expired_acknowledgement_reopens_and_notifies_the_current_level_again() -> None:
    expired = SITUATIONS["ack_expired"]
    assert expired is not None
    reopened, [gone, notify] = handle(expired, AckTimeout(), NOW)
    assert reopened.state is State.OPEN
    assert reopened.acknowledged_by == "nurse.z"
    assert isinstance(gone, AcknowledgementExpired)
    assert gone.acknowledged_by == "nurse.z"
    assert isinstance(notify, NotificationRequested)
    assert notify.targets == L1
    assert "nurse.z" in notify.reason


def test_each_escalation_step_is_sent_once() -> None:
    sent, [escalated, notify] = handle(BASE, Escalate(2, 2, ("role:gp",)), NOW)
    assert isinstance(escalated, AlertEscalated)
    assert escalated.data()["targets"] == ["role:gp"]
    assert isinstance(notify, NotificationRequested)
    assert notify.targets == ("role:gp",)
    assert (sent.last_step_no, sent.escalation_level, sent.notified) == (2, 2, ("role:gp",))
    with pytest.raises(IllegalTransition, match="already sent"):
        handle(sent, Escalate(2, 2, ("role:gp",)), NOW)


@pytest.mark.parametrize(
    ("command", "error", "message"),
    [
        (Resolve("nurse.a", NOW, None), InvalidCommand, "outcome is needed"),
        (Resolve("nurse.a", NOW, "sorted"), InvalidCommand, "not an outcome code"),
        (Resolve("", NOW, "advice_given"), InvalidCommand, "who you are"),
        (Acknowledge(" ", NOW), InvalidCommand, "who you are"),
        (Acknowledge("n", NOW, timeout_s=-1), InvalidCommand, "more than 0"),
        (Snooze("nurse.a", NOW, NOW + 5 * MIN, " "), InvalidCommand, "reason"),
        (Snooze("nurse.a", NOW, NOW - 5 * MIN, "x"), InvalidCommand, "future"),
        (Snooze("nurse.a", NOW, NOW + timedelta(hours=2), "x"), InvalidCommand, "at most 1 hour"),
        (Reassign("nurse.a", NOW, ""), InvalidCommand, "whom"),
        (AddNote("nurse.a", NOW, ""), InvalidCommand, "needs text"),
        (AddNote("nurse.a", NOW, "x" * 4001), InvalidCommand, "at most 4000"),
        (Escalate(0, 1, ("role:gp",)), InvalidCommand, "number"),
        (Acknowledge("n", datetime(2026, 11, 23, 10)), InvalidCommand, "no time zone"),
        (replace(hit(), value=float("nan")), InvalidCommand, "not a number"),
        (replace(hit(), priority=cast(Priority, "purple")), InvalidCommand, "priority 'purple'"),
    ],
)
def test_refusals_say_why(command: AlertCommand, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        handle(BASE, command, NOW)


@pytest.mark.parametrize(
    ("alert", "command", "message"),
    [
        (None, AddNote("nurse.a", NOW, "hello"), "no alert to add a note to"),
        (SITUATIONS["resolved"], Acknowledge("n", NOW), "already resolved .*add a note"),
        (ACKED, Escalate(2, 2, L1), r"Acknowledged by nurse\.z: escalation waits"),
        (replace(BASE, assignee="matron.b"), Reassign("n", NOW, "matron.b"), "already assigned"),
        (SITUATIONS["resolved"], hit(), "a new reading opens a new alert"),
    ],
)
def test_illegal_transitions_say_why(
    alert: Alert | None, command: AlertCommand, message: str
) -> None:
    with pytest.raises(IllegalTransition, match=message):
        handle(alert, command, NOW)


STEPS = st.sampled_from(sorted(COMMANDS))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(STEPS, st.integers(0, 90)), max_size=25))
def test_any_sequence_keeps_the_invariants(script: list[tuple[str, int]]) -> None:
    """Random commands at random later times: refusals change nothing; a resolved alert
    has an outcome and takes only notes; the count is the number of hits; holds end after
    they start; escalation steps only go up."""
    alert: Alert | None = None
    now, hits = NOW, 0
    for name, minutes in script:
        now += timedelta(minutes=minutes)
        command = _at(COMMANDS[name], now)
        try:
            new, events = handle(alert, command, now)
        except (Conflict, ValidationError):
            continue
        hits += isinstance(command, RaiseOrUpdate)
        if alert is not None and alert.state is State.RESOLVED:
            assert [type(e) for e in events] == [NoteAdded]
        assert new.count == hits
        assert new.state is not State.RESOLVED or new.outcome is not None
        assert all(h.end is None or h.end >= h.start for h in new.holds)
        assert new.last_step_no >= (alert.last_step_no if alert else 0)
        alert = new


def _at(command: AlertCommand, now: datetime) -> AlertCommand:
    match command:
        case RaiseOrUpdate() | ConditionCleared():
            return replace(command, measured_at=now)
        case Snooze():
            return replace(command, at=now, until=now + 30 * MIN)
        case Escalate(step_no=n):
            return replace(command, step_no=n + int(now.timestamp()) // 60)
        case AckTimeout() | SnoozeOver():
            return command
        case _:
            return replace(command, at=now)
