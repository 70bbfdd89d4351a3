"""Questionable readings (issue 14, item 5; hazard H14): never a clinical alarm alone, a
retake request to the device that took the reading, a technical alert when none comes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.adherence import retake_candidates
from alerts.engine import ManualObservation, PatientSnapshot, RuleEngine
from alerts.quality import questionable, questioning, retake_message
from alerts.store import retake_feedback

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

# Typed from docs/payload.md's device flags and docs/rules.md's table, not from the code.
QUESTIONED = [
    ("systolic_bp", "implausible", True),
    ("body_weight", "implausible", True),
    ("spo2", "questionable", True),
    ("blood_glucose", "questionable", True),
    ("systolic_bp", "body_movement", True),
    ("heart_rate", "body_movement", True),
    ("systolic_bp", "cuff_fit", True),
    ("diastolic_bp", "cuff_fit", True),
    ("body_weight", "cuff_fit", False),
    ("systolic_bp", "irregular_pulse", True),
    ("diastolic_bp", "irregular_pulse", True),
    ("heart_rate", "irregular_pulse", False),  # the pulse rate itself is still used
    ("spo2", "low_perfusion", True),
    ("heart_rate", "low_perfusion", True),
    ("systolic_bp", "low_perfusion", False),
    ("spo2", "battery_low", False),  # an unknown flag is kept and changes nothing
]


@pytest.mark.parametrize(("metric", "flag", "expected"), QUESTIONED)
def test_which_flags_question_which_metric(metric: str, flag: str, expected: bool) -> None:
    assert questionable(metric, [flag]) is expected
    assert questioning(metric, ["battery_low", flag]) == ((flag,) if expected else ())


def test_no_flags_is_a_good_reading() -> None:
    assert not questionable("spo2", None)
    assert not questionable("spo2", [])


def engine_for(conditions: tuple[str, ...]) -> RuleEngine:
    engine = RuleEngine()
    engine.load(PatientSnapshot(1, 1, conditions, {}, [], frozenset()))
    return engine


def test_a_questionable_severe_reading_raises_no_alarm_and_asks_its_device_for_a_retake() -> None:
    engine = engine_for(("hypertension",))
    flagged = [
        ManualObservation(1, "systolic_bp", T0, 192.0, device_id="bp-1", flags=("cuff_fit",)),
        ManualObservation(1, "diastolic_bp", T0, 96.0, device_id="bp-1", flags=("cuff_fit",)),
    ]
    decisions = engine.evaluate(flagged)
    assert decisions.hits == []
    assert [(r.device_id, r.metric, r.flags) for r in decisions.retakes] == [
        ("bp-1", "diastolic_bp", ("cuff_fit",)),
        ("bp-1", "systolic_bp", ("cuff_fit",)),
    ]
    assert "systolic_bp" not in engine.patients[1].series  # no part of any window
    # the good retake is judged as any reading: severe, red, to the device that took it
    retake = ManualObservation(1, "systolic_bp", T0 + timedelta(minutes=3), 186.0, device_id="bp-1")
    hits = engine.evaluate([retake]).hits
    assert {(h.rule_id, h.device_id) for _, h in hits} == {
        ("threshold:systolic_bp:severe", "bp-1"),
        ("threshold:systolic_bp:stage2", "bp-1"),
    }


def test_a_questionable_reading_never_completes_a_news2_set() -> None:
    engine = engine_for(("post_discharge",))
    reading = ManualObservation(1, "spo2", T0, 84.0, device_id="ox-1", flags=("low_perfusion",))
    decisions = engine.evaluate([reading])
    assert decisions.hits == []
    assert engine.patients[1].news2_latest == {}
    assert len(decisions.retakes) == 1


def test_a_late_questionable_reading_asks_for_no_retake() -> None:
    engine = engine_for(("hypertension",))
    late = ManualObservation(
        1, "systolic_bp", T0, 200.0, late=True, device_id="bp-1", flags=("questionable",)
    )
    decisions = engine.evaluate([late])
    assert (decisions.hits, decisions.reviews, decisions.retakes) == ([], [], [])


def test_one_retake_request_per_device_and_measurement() -> None:
    engine = engine_for(("hypertension",))
    flags = ("irregular_pulse", "body_movement")
    decisions = engine.evaluate(
        [
            ManualObservation(1, "systolic_bp", T0, 150.0, device_id="bp-1", flags=flags),
            ManualObservation(1, "diastolic_bp", T0, 96.0, device_id="bp-1", flags=flags),
        ]
    )
    [request] = retake_feedback(decisions.retakes)
    assert request["device_id"] == "bp-1"
    payload = request["payload"].obj
    assert payload["kind"] == "retake"
    assert payload["metrics"] == ["diastolic_bp", "systolic_bp"]
    assert payload["flags"] == ["body_movement", "irregular_pulse"]
    assert "sit still" in payload["message"]
    assert request["key"] == f"retake-bp-1-{T0.isoformat()}"


def test_the_retake_message_names_what_to_do() -> None:
    assert "cuff" in retake_message(["cuff_fit", "body_movement"])
    assert "warm your hand" in retake_message(["low_perfusion"])
    assert "take it again" in retake_message(["implausible"])


def test_no_good_retake_within_the_time_is_a_technical_alert() -> None:
    pending = [(1, "spo2", T0, "ox-1", ["low_perfusion", "battery_low"])]
    assert retake_candidates(pending, T0 + timedelta(minutes=29), {1: 30}) == []
    [alert] = retake_candidates(pending, T0 + timedelta(minutes=30), {1: 30})
    assert (alert.rule_id, alert.kind, alert.at) == ("retake:spo2", "quality", T0)
    assert alert.details == {
        "device_id": "ox-1",
        "flags": ["low_perfusion"],
        "retake_within_min": 30,
    }
    assert "ox-1" in alert.message
    assert retake_candidates(pending, T0 + timedelta(minutes=59), {1: 60}) == []
