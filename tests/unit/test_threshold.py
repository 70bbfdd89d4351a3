"""Threshold rules: the state machine as tables (hysteresis, sustained duration, coexisting
bands, out-of-order and stale readings) and hypothesis properties against flapping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.rules.threshold import ThresholdRule, ThresholdState, evaluate_threshold
from alerts.rules.types import Cleared, Priority, RuleHit

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
SEVERE = ThresholdRule("threshold:systolic_bp:severe", "systolic_bp", "high", 180, Priority.RED, 10)
STAGE2 = ThresholdRule("threshold:systolic_bp:stage2", "systolic_bp", "high", 150, Priority.AMBER)
HYPO = ThresholdRule(
    "threshold:blood_glucose:hypo",
    "blood_glucose",
    "low",
    4.0,
    Priority.AMBER,
    0.5,
    inclusive=False,
)


def run(
    rule: ThresholdRule,
    values: Sequence[float],
    step_s: float = 60,
    state: ThresholdState | None = None,
) -> list[str]:
    """Decisions as text: "hit" (onset), "again" (repeat hit), "clear", "-"."""
    state, out = state or ThresholdState(), []
    for i, value in enumerate(values):
        at = T0 + timedelta(seconds=i * step_s)
        state, decision = evaluate_threshold(rule, state, value, at)
        if isinstance(decision, RuleHit):
            out.append("hit" if decision.details["onset"] else "again")
        else:
            out.append("clear" if isinstance(decision, Cleared) else "-")
    return out


@pytest.mark.parametrize(
    ("rule", "values", "expected"),
    [
        (SEVERE, [179, 180], ["-", "hit"]),  # inclusive: ≥ 180
        (SEVERE, [179.9, 180.0, 200], ["-", "hit", "again"]),
        (SEVERE, [185, 175, 171, 185], ["hit", "-", "-", "again"]),  # held in the band
        (SEVERE, [185, 170.01, 170], ["hit", "-", "clear"]),  # clears at 180 − 10
        (SEVERE, [185, 169, 185], ["hit", "clear", "hit"]),  # a new excursion
        (SEVERE, [120, 130], ["-", "-"]),
        (STAGE2, [150, 149.9, 150], ["hit", "clear", "hit"]),  # no hysteresis: plain limit
        (HYPO, [4.0, 3.99, 4.0, 4.49, 4.5], ["-", "hit", "-", "-", "clear"]),  # < 4.0, +0.5
        (replace(HYPO, inclusive=True), [4.0], ["hit"]),
    ],
)
def test_state_machine(rule: ThresholdRule, values: list[float], expected: list[str]) -> None:
    assert run(rule, values) == expected


def test_red_and_amber_bands_coexist_each_with_its_own_state() -> None:
    values = [155, 185, 165, 172, 145]
    assert run(STAGE2, values) == ["hit", "again", "again", "again", "clear"]
    assert run(SEVERE, values) == ["-", "hit", "clear", "-", "-"]


def test_the_hit_tells_a_clinician_what_and_why() -> None:
    _, hit = evaluate_threshold(SEVERE, ThresholdState(), 186, T0)
    assert isinstance(hit, RuleHit)
    assert hit.message == "Systolic blood pressure 186 mmHg ≥ 180"
    assert (hit.rule_id, hit.kind, hit.metric, hit.priority) == (
        "threshold:systolic_bp:severe",
        "threshold",
        "systolic_bp",
        Priority.RED,
    )
    assert (hit.value, hit.measured_at, hit.direction) == (186, T0, "high")
    assert hit.details["limit"] == 180
    _, hypo = evaluate_threshold(HYPO, ThresholdState(), 3.2, T0)
    assert isinstance(hypo, RuleHit)
    assert hypo.message == "Blood glucose (capillary) 3.2 mmol/L < 4"


HR = ThresholdRule("t:hr", "heart_rate", "high", 130, Priority.RED, sustained_s=300)


@pytest.mark.parametrize(
    ("values", "step_s", "expected"),
    [
        # one sample a minute: beyond for 5 minutes hits at the sixth sample
        ([131] * 7, 60, ["-"] * 5 + ["hit", "again"]),
        # a dip inside the limit restarts the clock
        ([131, 131, 131, 120, *[131] * 6], 60, ["-"] * 9 + ["hit"]),
        # every 30 s: ten intervals span 5 minutes
        ([131] * 11, 30, ["-"] * 10 + ["hit"]),
        # a gap longer than the sustained duration is not evidence: the clock restarts
        ([131, 131], 301, ["-", "-"]),
    ],
)
def test_sustained_needs_every_sample_beyond_over_the_whole_duration(
    values: list[float], step_s: float, expected: list[str]
) -> None:
    assert run(HR, values, step_s) == expected


def test_sustained_gap_limit_is_configurable() -> None:
    tolerant = replace(HR, max_gap_s=600)
    assert run(tolerant, [131, 131], 301) == ["-", "hit"]


def test_an_older_reading_never_moves_the_state_but_is_still_shown() -> None:
    state, _ = evaluate_threshold(SEVERE, ThresholdState(), 190, T0)
    earlier = T0 - timedelta(minutes=5)
    kept, decision = evaluate_threshold(SEVERE, state, 120, earlier)  # cannot clear
    assert (kept, decision) == (state, None)
    kept, decision = evaluate_threshold(SEVERE, state, 195, earlier)
    assert kept == state
    assert isinstance(decision, RuleHit)
    assert decision.details["out_of_order"] is True
    # a sustained rule cannot judge a reading out of order
    hr_state, _ = evaluate_threshold(HR, ThresholdState(), 131, T0)
    assert evaluate_threshold(HR, hr_state, 150, earlier) == (hr_state, None)


def test_stale_readings_never_alert_as_current() -> None:
    rule = replace(SEVERE, stale_after_s=6 * 3600)
    old = T0 - timedelta(hours=7)
    assert evaluate_threshold(rule, ThresholdState(), 200, old, now=T0) == (ThresholdState(), None)
    _, fresh = evaluate_threshold(rule, ThresholdState(), 200, T0 - timedelta(hours=5), now=T0)
    assert isinstance(fresh, RuleHit)


def test_a_state_loaded_as_breached_repeats_and_clears() -> None:
    assert run(SEVERE, [181, 165], state=ThresholdState(breached=True)) == ["again", "clear"]


@pytest.mark.parametrize(
    "bad",
    [
        {"direction": "up"},
        {"limit": float("nan")},
        {"limit": float("inf")},
        {"hysteresis": -1},
        {"sustained_s": -60},
    ],
)
def test_a_malformed_rule_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=SEVERE.rule_id):
        replace(SEVERE, **bad)  # type: ignore[arg-type]


BAND = st.floats(min_value=170.001, max_value=179.999)  # inside the hysteresis band


@given(st.lists(st.one_of(BAND, st.floats(180, 260)), min_size=1, max_size=200))
def test_hovering_at_the_limit_never_flaps(values: list[float]) -> None:
    """Values that never come back to limit − hysteresis: one onset at most, no clear."""
    decisions = run(SEVERE, values)
    assert decisions.count("hit") <= 1
    assert "clear" not in decisions


@given(st.lists(st.floats(100, 260), max_size=300))
def test_at_most_one_onset_per_excursion(values: list[float]) -> None:
    """Onsets and clears alternate, each clear needs a value at or below limit − hysteresis
    after the onset, and repeats only happen while breached."""
    decisions = run(SEVERE, values)
    transitions = [d for d in decisions if d in ("hit", "clear")]
    assert transitions == ["hit", "clear"] * (len(transitions) // 2) + (
        ["hit"] if len(transitions) % 2 else []
    )
    for value, decision in zip(values, decisions, strict=True):
        if decision == "clear":
            assert value <= 170
        if decision in ("hit", "again"):
            assert value >= 180


@given(st.lists(st.floats(100, 260), max_size=100), st.integers(0, 100))
def test_a_restart_from_the_stored_breach_flag_decides_the_same(
    values: list[float], cut: int
) -> None:
    """The engine reloads only "is there an open breached alert": that is enough."""
    whole = run(SEVERE, values)
    state = ThresholdState()
    for i, value in enumerate(values[:cut]):
        state, _ = evaluate_threshold(SEVERE, state, value, T0 + timedelta(minutes=i))
    reloaded = ThresholdState(breached=state.breached)
    assert run(SEVERE, values[cut:], state=reloaded) == whole[cut:]
