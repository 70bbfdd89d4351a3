"""Rule kinds as pure functions: thresholds (hysteresis, sustained), change, slope,
baseline; hypothesis properties for flapping and batch-split invariance."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.engine import ManualObservation, PatientSnapshot, RuleEngine
from alerts.rules.threshold import ThresholdRule, ThresholdState, evaluate_threshold
from alerts.rules.trend import (
    BaselineRule,
    ChangeRule,
    SlopeRule,
    evaluate_baseline,
    evaluate_change,
    evaluate_slope,
)
from alerts.rules.types import Cleared, Priority, RuleHit

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
HIGH = ThresholdRule("t:sbp", "systolic_bp", "high", 180, Priority.RED, hysteresis=10)


def run(rule: ThresholdRule, values: list[float], step_s: float = 60) -> list[str]:
    state, out = ThresholdState(), []
    for i, value in enumerate(values):
        state, decision = evaluate_threshold(rule, state, value, T0 + timedelta(seconds=i * step_s))
        out.append(
            "hit"
            if isinstance(decision, RuleHit)
            else "clear"
            if isinstance(decision, Cleared)
            else "-"
        )
    return out


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([179, 180], ["-", "hit"]),  # inclusive: ≥ 180
        ([185, 175, 171, 185], ["hit", "-", "-", "hit"]),  # held in the band: repeat hit
        ([185, 170], ["hit", "clear"]),  # 180 − 10: cleared
        ([185, 169, 185], ["hit", "clear", "hit"]),
        ([120, 130], ["-", "-"]),
    ],
)
def test_high_threshold_with_hysteresis(values: list[float], expected: list[str]) -> None:
    assert run(HIGH, values) == expected


def test_exclusive_low_threshold() -> None:
    rule = ThresholdRule("t:glu", "blood_glucose", "low", 4.0, Priority.AMBER, inclusive=False)
    assert run(rule, [4.0, 3.9, 4.0]) == ["-", "hit", "clear"]


def test_sustained_duration_needs_every_sample_beyond_for_the_whole_time() -> None:
    rule = ThresholdRule("t:hr", "heart_rate", "high", 130, Priority.RED, sustained_s=300)
    # one sample a minute: 131 for 5 minutes hits at the sixth sample (5 minutes elapsed)
    assert run(rule, [131] * 7) == ["-", "-", "-", "-", "-", "hit", "hit"]
    # a dip inside the limit restarts the clock
    assert run(rule, [131, 131, 131, 120, 131, 131, 131, 131, 131, 131]) == (["-"] * 9 + ["hit"])


@given(st.lists(st.floats(min_value=170.01, max_value=195), min_size=1, max_size=200))
def test_hysteresis_never_flaps_within_the_band(values: list[float]) -> None:
    """Values that never fall to limit − hysteresis: at most one excursion, no clear."""
    decisions = run(HIGH, values)
    assert "clear" not in decisions


@given(st.lists(st.floats(min_value=100, max_value=220), max_size=200))
def test_clears_and_raises_alternate(values: list[float]) -> None:
    transitions = [d for d in run(HIGH, values) if d == "clear"]
    raises = 0
    state = ThresholdState()
    for i, v in enumerate(values):
        new, _ = evaluate_threshold(HIGH, state, v, T0 + timedelta(minutes=i))
        raises += new.breached and not state.breached
        state = new
    assert raises - len(transitions) in (0, 1)


def series(points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    times = np.array([T0.timestamp() + h * 3600 for h, _ in points])
    return times, np.array([v for _, v in points], dtype=float)


WEIGHT_3D = ChangeRule("c3", "body_weight", 2.0, 72, "rise", Priority.AMBER)


@pytest.mark.parametrize(
    ("points", "hit"),
    [
        ([(0, 80.0), (48, 81.0), (71, 82.1)], True),  # +2.1 in 71 h
        ([(0, 80.0), (48, 81.0), (71, 82.0)], False),  # exactly 2.0 is not "more than"
        ([(0, 80.0), (73, 82.5)], False),  # the low point is outside the window
        ([(0, 82.5), (24, 80.0), (48, 82.2)], True),  # against the window's minimum
        ([(0, 80.0)], False),
    ],
)
def test_weight_gain_over_three_days(points: list[tuple[float, float]], hit: bool) -> None:
    assert (evaluate_change(WEIGHT_3D, *series(points)) is not None) is hit


def test_slope_per_day() -> None:
    rule = SlopeRule("s", "body_weight", 0.5, 7, 4, "rise", Priority.AMBER)
    rising = series([(d * 24, 80 + 0.6 * d) for d in range(6)])
    flat = series([(d * 24, 80.0) for d in range(6)])
    assert evaluate_slope(rule, *rising) is not None
    assert evaluate_slope(rule, *flat) is None
    assert evaluate_slope(rule, *series([(0, 80), (24, 82)])) is None  # too few points


def test_baseline_ewma_detects_a_shift_and_ignores_noise() -> None:
    rule = BaselineRule("b", "body_weight", 28, 3, 0.3, 3.0, 2.0, 7, "rise", Priority.AMBER)
    rng = np.random.default_rng(4)
    base = [(d * 24, 80 + rng.normal(0, 0.3)) for d in range(28)]
    assert evaluate_baseline(rule, *series([*base, (29 * 24, 80.2)])) is None
    shifted = [*base, *[(d * 24, 83.5) for d in range(29, 32)]]
    hit = evaluate_baseline(rule, *series(shifted))
    assert hit is not None
    assert hit.details["baseline_mean"] == pytest.approx(80, abs=0.3)
    assert evaluate_baseline(rule, *series([*base[:5], (29 * 24, 90)])) is None  # too few


def engine_for(conditions: tuple[str, ...] = ("hypertension", "heart_failure")) -> RuleEngine:
    engine = RuleEngine()
    for pid in (1, 2):
        engine.load(PatientSnapshot(pid, 0, conditions, {}, [], frozenset()))
    return engine


READINGS = st.lists(
    st.tuples(
        st.sampled_from([1, 2]),
        st.sampled_from(["systolic_bp", "body_weight"]),
        st.integers(0, 400),
        st.floats(60, 200),
    ),
    max_size=60,
    unique_by=lambda r: (r[0], r[1], r[2]),
)


@settings(max_examples=60, deadline=None)
@given(READINGS, st.data())
def test_decisions_do_not_depend_on_batching_or_interleaving(
    raw: list[tuple[int, str, int, float]], data: st.DataObject
) -> None:
    readings = sorted(
        (
            ManualObservation(pid, metric, T0 + timedelta(hours=h), value)
            for pid, metric, h, value in raw
        ),
        key=lambda r: r.time,
    )
    whole = engine_for().evaluate(readings)
    # Split into batches at arbitrary points, shuffling patients within each batch.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(readings)), max_size=5)))
    engine, hits, clears = engine_for(), [], []
    for start, end in zip([0, *cuts], [*cuts, len(readings)], strict=True):
        batch = data.draw(st.permutations(readings[start:end]))
        out = engine.evaluate(batch)
        hits += out.hits
        clears += out.clears
    assert sorted(hits, key=repr) == sorted(whole.hits, key=repr)
    assert sorted(clears, key=repr) == sorted(whole.clears, key=repr)


@given(st.lists(st.floats(150, 260), min_size=1, max_size=30))
def test_late_data_never_raises_an_alert(values: list[float]) -> None:
    engine = engine_for()
    out = engine.evaluate(
        ManualObservation(1, "systolic_bp", T0 + timedelta(minutes=i), v, late=True)
        for i, v in enumerate(values)
    )
    assert out.hits == []
    assert out.clears == []
    if max(values) >= 180:
        assert any(hit.rule_id == "threshold:systolic_bp:severe" for _, hit in out.reviews)


def test_news2_from_a_vital_set_within_the_window() -> None:
    engine = engine_for(("post_discharge",))  # scale 1 (COPD asks for the scale first)
    at = T0
    out = engine.evaluate(
        [
            ManualObservation(1, "spo2", at, 85, on_oxygen=True, consciousness="A"),
            ManualObservation(1, "heart_rate", at + timedelta(minutes=1), 118),
            ManualObservation(1, "body_temperature", at + timedelta(minutes=2), 38.6),
            ManualObservation(
                1, "systolic_bp", at + timedelta(hours=3), 125
            ),  # outside the 15 min window
        ]
    )
    news2 = [hit for _, hit in out.hits if hit.rule_id == "news2"]
    # spo2 85 → 3 and oxygen → 2: 5 (medium); + pulse 118 → 2: 7; + 38.6 °C → 1: 8 (high).
    # The blood pressure three hours later has no fresh companions: score 0, no hit.
    assert [hit.value for hit in news2] == [5, 7, 8]
    assert [hit.priority for hit in news2] == [Priority.AMBER, Priority.RED, Priority.RED]
    assert "partial" in news2[-1].message
    assert news2[-1].details["missing"] == ["respiratory_rate", "systolic_bp"]


def test_slope_rule_is_off_by_default_and_can_be_switched_on() -> None:
    readings = [
        ManualObservation(1, "body_weight", T0 + timedelta(days=d), 80 + 0.3 * d) for d in range(7)
    ]
    off = RuleEngine()
    off.load(PatientSnapshot(1, 0, ("heart_failure",), {}, [], frozenset()))
    assert not [h for _, h in off.evaluate(readings).hits if h.kind == "slope"]
    on = RuleEngine()
    overrides = {"slope:body_weight": {"enabled": True, "per_day": 0.25}}
    on.load(PatientSnapshot(1, 1, ("heart_failure",), overrides, [], frozenset()))
    slopes = [h for _, h in on.evaluate(readings).hits if h.kind == "slope"]
    assert slopes
    assert slopes[-1].details["slope_per_day"] == pytest.approx(0.3)


def test_a_batch_is_decided_per_patient_and_rule_in_measurement_order() -> None:
    from alerts.engine import Decisions
    from alerts.rules.types import Cleared
    from alerts.store import decide_in_order, in_measurement_order

    def hit(minute: int, value: float, priority: Priority = Priority.AMBER) -> RuleHit:
        return RuleHit(
            "t:sbp",
            "threshold",
            "systolic_bp",
            priority,
            value,
            T0 + timedelta(minutes=minute),
            f"sbp {value}",
            "high",
        )

    # Hits and clearances arrive in separate lists; measured: 0, 1 (clear), 2, 3, 4 (clear)
    decisions = Decisions(
        hits=[(1, hit(0, 182)), (2, hit(0, 150)), (1, hit(3, 176, Priority.RED)), (1, hit(2, 199))],
        clears=[(1, Cleared("t:sbp", T0 + timedelta(minutes=1), 130.0))],
    )
    groups = in_measurement_order(decisions)
    assert [i.at.minute for i in groups[(1, "t:sbp")]] == [0, 1, 2, 3]
    one = decide_in_order((1, "t:sbp"), groups[(1, "t:sbp")], None, T0)
    assert one is not None
    alert = one.alert
    assert (alert.count, alert.first_value, alert.latest_value, alert.worst_value) == (
        3,
        182,
        176,
        199,
    )
    assert alert.priority is Priority.RED
    assert not alert.condition_cleared  # the recovery at minute 1 came before two breaches
    assert [(e.kind, getattr(e, "hits", None)) for e in one.events] == [
        ("raised", 1),
        ("condition_cleared", None),
        ("updated", 2),  # 199, then 176 red: one event, naming the rise
    ]
    assert one.events[-1].previous_priority is Priority.AMBER  # type: ignore[attr-defined]
    later = Decisions(clears=[(1, Cleared("t:sbp", T0 + timedelta(minutes=4), 128.0))])
    cleared = decide_in_order((1, "t:sbp"), in_measurement_order(later)[(1, "t:sbp")], alert, T0)
    assert cleared is not None
    assert cleared.alert.condition_cleared
    two = decide_in_order((2, "t:sbp"), groups[(2, "t:sbp")], None, T0)
    assert two is not None
    assert two.alert.count == 1


_VITALS = {
    "respiratory_rate": st.integers(4, 40),
    "spo2": st.integers(75, 100),
    "systolic_bp": st.integers(70, 230),
    "heart_rate": st.integers(30, 160),
    "body_temperature": st.floats(34.0, 41.0).map(lambda v: round(v, 2)),
}


@settings(max_examples=150, deadline=None)
@given(
    scale=st.sampled_from([1, 2]),
    steps=st.lists(
        st.tuples(
            st.sampled_from(sorted(_VITALS)),
            st.data(),
            st.integers(0, 20),  # minutes after the previous reading
            st.sampled_from([None, True, False]),
            st.sampled_from([None, "A", "C", "V"]),
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_engine_news2_matches_scoring_the_fresh_vital_set(scale: int, steps: list[Any]) -> None:
    """The engine charts each parameter once per new value; the result must equal scoring
    the set of values fresh within the window from scratch, reading after reading."""
    from alerts.news2 import Band, VitalSet, score_news2
    from homeward.domain import Consciousness

    engine = RuleEngine()
    target = {"low": 88, "high": 92} if scale == 2 else {"low": 94, "high": 98}
    overrides = {"spo2_target": {**target, "scale": scale}}  # the scale is recorded with it
    engine.load(PatientSnapshot(1, 0, ("copd",), overrides, [], frozenset()))
    news2_rule = engine.patients[1].rules.news2
    assert news2_rule is not None
    assert news2_rule.spo2_scale == scale
    window_s = 15 * 60
    latest: dict[str, tuple[datetime, object]] = {}
    at = T0
    for metric, data, gap, oxygen, level in steps:
        at += timedelta(minutes=gap)
        value = data.draw(_VITALS[metric])
        for key, item in ((metric, value), ("on_oxygen", oxygen), ("consciousness", level)):
            if item is not None:
                latest[key] = (at, item)
        fresh: dict[str, Any] = {
            k: v for k, (t, v) in latest.items() if (at - t).total_seconds() <= window_s
        }
        expected = score_news2(
            VitalSet(
                spo2_scale=scale,
                on_oxygen=fresh.get("on_oxygen"),
                consciousness=Consciousness(fresh["consciousness"])
                if "consciousness" in fresh
                else None,
                **{k: fresh.get(k) for k in _VITALS},
            )
        )
        out = engine.evaluate([ManualObservation(1, metric, at, value, False, oxygen, level)])
        news2 = [hit for _, hit in out.hits if hit.rule_id == "news2"]
        if expected.band is Band.LOW:
            assert news2 == []
        else:
            assert [(h.value, h.details["band"], h.details["points"]) for h in news2] == [
                (expected.score, expected.band.value, dict(expected.points))
            ]
