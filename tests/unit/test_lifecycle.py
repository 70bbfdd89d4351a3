"""The alert state machine, exhaustively: every state × every command, typed as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.lifecycle import (
    Acknowledge,
    AddNote,
    AlertState,
    Command,
    ExpireAcknowledgement,
    Reassign,
    RepeatHit,
    Resolve,
    Snooze,
    State,
    decide,
)
from homeward.errors import Conflict, ValidationError

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
EXPIRED = NOW - timedelta(minutes=1)

COMMANDS: dict[str, Command] = {
    "acknowledge": Acknowledge("nurse.a", NOW, timeout_s=900),
    "resolve": Resolve("nurse.a", NOW, "advice_given", "phoned, repeat reading fine"),
    "snooze": Snooze("nurse.a", NOW, NOW + timedelta(minutes=30), "patient at the surgery"),
    "reassign": Reassign("nurse.a", NOW, "matron.b"),
    "note": AddNote("nurse.a", NOW, "left a voicemail"),
    "expire_ack": ExpireAcknowledgement(NOW),
    "repeat_hit": RepeatHit(NOW),
}

# state → command → resulting state and event, or the error raised
MATRIX: dict[State, dict[str, tuple[State, str] | type[Exception]]] = {
    State.OPEN: {
        "acknowledge": (State.ACKNOWLEDGED, "acknowledged"),
        "resolve": (State.RESOLVED, "resolved"),
        "snooze": (State.OPEN, "snoozed"),
        "reassign": (State.OPEN, "reassigned"),
        "note": (State.OPEN, "note_added"),
        "expire_ack": Conflict,
        "repeat_hit": (State.OPEN, "updated"),
    },
    State.ACKNOWLEDGED: {
        "acknowledge": Conflict,
        "resolve": (State.RESOLVED, "resolved"),
        "snooze": (State.ACKNOWLEDGED, "snoozed"),
        "reassign": (State.ACKNOWLEDGED, "reassigned"),
        "note": (State.ACKNOWLEDGED, "note_added"),
        "expire_ack": (State.OPEN, "acknowledgement_expired"),
        "repeat_hit": (State.ACKNOWLEDGED, "updated"),
    },
    State.RESOLVED: {
        "acknowledge": Conflict,
        "resolve": Conflict,
        "snooze": Conflict,
        "reassign": Conflict,
        "note": (State.RESOLVED, "note_added"),
        "expire_ack": Conflict,
        "repeat_hit": Conflict,
    },
}


def alert_in(state: State) -> AlertState:
    return AlertState(
        state=state,
        priority="amber",
        acknowledged_by="nurse.z",
        ack_expires_at=EXPIRED if state is State.ACKNOWLEDGED else None,
    )


CASES = [(state, name) for state in State for name in COMMANDS]


def test_the_matrix_covers_every_state_and_command() -> None:
    assert set(MATRIX) == set(State)
    assert all(set(row) == set(COMMANDS) for row in MATRIX.values())


@pytest.mark.parametrize(("state", "command"), CASES)
def test_state_by_command(state: State, command: str) -> None:
    expected = MATRIX[state][command]
    alert = alert_in(state)
    if isinstance(expected, type):
        with pytest.raises(expected):
            decide(alert, COMMANDS[command])
        return
    decision = decide(alert, COMMANDS[command])
    assert State(decision.changes.get("state", state.value)) is expected[0]
    assert decision.event == expected[1]


@pytest.mark.parametrize(
    ("command", "error", "message"),
    [
        (Resolve("nurse.a", NOW, None), ValidationError, "outcome is needed"),
        (Resolve("nurse.a", NOW, "sorted"), ValidationError, "unknown outcome"),
        (Resolve("", NOW, "advice_given"), ValidationError, "who you are"),
        (Snooze("nurse.a", NOW, NOW + timedelta(minutes=5), " "), ValidationError, "reason"),
        (Snooze("nurse.a", NOW, NOW - timedelta(minutes=5), "x"), ValidationError, "future"),
        (Snooze("nurse.a", NOW, NOW + timedelta(hours=25), "x"), ValidationError, "at most"),
        (Reassign("nurse.a", NOW, ""), ValidationError, "whom"),
        (AddNote("nurse.a", NOW, ""), ValidationError, "text"),
    ],
)
def test_refusals_say_why(command: Command, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        decide(alert_in(State.OPEN), command)


def test_red_alerts_snooze_for_an_hour_at_most() -> None:
    red = AlertState(State.OPEN, "red")
    decide(red, Snooze("n", NOW, NOW + timedelta(minutes=60), "reviewed by GP"))
    with pytest.raises(ValidationError, match=r"at most 1:00:00"):
        decide(red, Snooze("n", NOW, NOW + timedelta(minutes=61), "reviewed by GP"))


def test_acknowledgement_carries_its_timeout_and_expires_only_when_due() -> None:
    ack = decide(alert_in(State.OPEN), Acknowledge("nurse.a", NOW, timeout_s=600))
    assert ack.changes["ack_expires_at"] == NOW + timedelta(minutes=10)
    waiting = AlertState(State.ACKNOWLEDGED, "amber", "nurse.a", NOW + timedelta(minutes=10))
    with pytest.raises(Conflict, match="not expired"):
        decide(waiting, ExpireAcknowledgement(NOW))
    assert (
        decide(waiting, ExpireAcknowledgement(NOW + timedelta(minutes=10))).changes["state"]
        == "open"
    )


def test_double_acknowledgement_names_who_did_it() -> None:
    with pytest.raises(Conflict, match=r"already acknowledged by nurse\.z"):
        decide(alert_in(State.ACKNOWLEDGED), Acknowledge("nurse.b", NOW))
