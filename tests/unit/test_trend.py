"""Trend rules: change over a window, least-squares slope, EWMA and CUSUM against the
patient's own baseline — tables, reference implementations, and batch-split invariance."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.rules.trend import (
    DAY_S,
    BaselineRule,
    ChangeRule,
    CusumRule,
    CusumState,
    SlopeRule,
    evaluate_baseline,
    evaluate_change,
    evaluate_cusum,
    evaluate_slope,
)
from alerts.rules.types import Array, Priority, RuleHit, Sample, window

T0 = 1_790_000_000.0  # epoch seconds, late 2026
H = 3600.0


def series(points: Sequence[tuple[float, float]]) -> tuple[Array, Array]:
    """(hours after T0, value) pairs → the arrays the rules take."""
    return window([(T0 + h * H, v) for h, v in points])


def daily(values: Sequence[float], start_day: int = 0) -> list[tuple[float, float]]:
    return [((start_day + d) * 24.0, v) for d, v in enumerate(values)]


# --- change -----------------------------------------------------------------------------

WEIGHT_3D = ChangeRule("change:body_weight:3d", "body_weight", 2.0, 72, "rise", Priority.AMBER)
WEIGHT_1D = ChangeRule("change:body_weight:1d", "body_weight", 1.5, 24, "rise", Priority.AMBER)
SPO2_FALL = ChangeRule("c:spo2", "spo2", 3, 24, "fall", Priority.AMBER)


@pytest.mark.parametrize(
    ("rule", "points", "change"),
    [
        (WEIGHT_3D, [(0, 80.0), (48, 81.0), (71, 82.1)], 2.1),  # + 2.1 within 71 h
        (WEIGHT_3D, [(0, 80.0), (48, 81.0), (71, 82.0)], None),  # 2.0 is not "more than"
        (WEIGHT_3D, [(0, 80.0), (72, 82.5)], 2.5),  # exactly 72 h before: inside
        (WEIGHT_3D, [(0, 80.0), (72.01, 82.5)], None),  # just outside the window
        (WEIGHT_3D, [(0, 82.5), (24, 80.0), (48, 82.2)], 2.2),  # from the window's lowest
        (WEIGHT_3D, [(0, 80.0), (24, 83.0), (48, 81.0)], None),  # the newest is what counts
        (WEIGHT_3D, [(0, 80.0)], None),
        (WEIGHT_1D, [(0, 80.0), (20, 81.0), (23, 81.6)], 1.6),
        (WEIGHT_1D, [(0, 80.0), (25, 81.6)], None),
        (SPO2_FALL, [(0, 96), (10, 94), (20, 92.9)], 3.1),  # fall: from the highest
        (SPO2_FALL, [(0, 96), (20, 93)], None),
    ],
)
def test_change_over_a_window(
    rule: ChangeRule, points: list[tuple[float, float]], change: float | None
) -> None:
    hit = evaluate_change(rule, *series(points))
    if change is None:
        assert hit is None
    else:
        assert hit is not None
        assert hit.details["change"] == pytest.approx(change)
        assert hit.value == points[-1][1]
        assert hit.direction == ("high" if rule.direction == "rise" else "low")


def test_change_message_and_time() -> None:
    hit = evaluate_change(WEIGHT_3D, *series([(0, 80.0), (71, 82.1)]))
    assert hit is not None
    assert hit.message.startswith("Body weight up 2.1 in 72 h (from 80 to 82.1")
    assert hit.measured_at == Sample(T0 + 71 * H, 0).measured_at


def test_change_uses_numpy_for_long_windows_and_agrees() -> None:
    rng = np.random.default_rng(2)
    points = [(i / 60, 95 + rng.normal(0, 1)) for i in range(2000)]  # one a minute
    times, values = series([*points, (2000 / 60, 90.0)])
    hit = evaluate_change(SPO2_FALL, times, values)
    assert hit is not None
    assert hit.details["reference"] == pytest.approx(values[:-1].max())


# --- slope ------------------------------------------------------------------------------

SLOPE = SlopeRule("slope:body_weight", "body_weight", 0.5, 7, 4, "rise", Priority.AMBER)


@pytest.mark.parametrize(
    ("rule", "points", "hits"),
    [
        (SLOPE, daily([80 + 0.6 * d for d in range(6)]), True),
        (SLOPE, daily([80 + 0.5 * d for d in range(6)]), True),  # "at least" 0.5 a day
        (SLOPE, daily([80 + 0.4 * d for d in range(6)]), False),
        (SLOPE, daily([80.0] * 6), False),
        (SLOPE, daily([80, 82]), False),  # too few points
        (SLOPE, [(0, 80), (0, 81), (0, 82), (0, 83)], False),  # no time span
        (SLOPE, [*daily([90, 90, 90]), *daily([80 + 0.6 * d for d in range(8)], 3)], True),
        (replace(SLOPE, direction="fall"), daily([80 - 0.6 * d for d in range(6)]), True),
        (replace(SLOPE, direction="fall"), daily([80 + 0.6 * d for d in range(6)]), False),
    ],
)
def test_slope_per_day(rule: SlopeRule, points: list[tuple[float, float]], hits: bool) -> None:
    assert (evaluate_slope(rule, *series(points)) is not None) is hits


@pytest.mark.parametrize("count", [5, 47, 48, 49, 500])
def test_slope_matches_numpy_polyfit_on_both_paths(count: int) -> None:
    rng = np.random.default_rng(count)
    hours = np.sort(rng.uniform(0, 24 * 6.9, count))
    values = 80 + 0.7 * hours / 24 + rng.normal(0, 0.2, count)
    times = T0 + hours * H
    hit = evaluate_slope(replace(SLOPE, min_points=3), times, values)
    assert hit is not None
    expected = np.polyfit((times - T0) / DAY_S, values, 1)[0]
    assert hit.details["slope_per_day"] == pytest.approx(expected, abs=1e-4)
    assert hit.details["points"] == count


# --- EWMA baseline ----------------------------------------------------------------------

EWMA = BaselineRule(
    "baseline:body_weight", "body_weight", 28, 3, 0.3, 3.0, 2.0, 14, "rise", Priority.AMBER
)


def noisy_baseline(days: int = 28, sd: float = 0.3, seed: int = 4) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    return daily([80 + rng.normal(0, sd) for _ in range(days)])


def ewma_reference(rule: BaselineRule, times: Array, values: Array) -> tuple[float, float] | None:
    """Straight from the definition: (z − μ, control limit), or None when not armed."""
    t = times[-1]
    recent = times >= t - rule.recent_days * DAY_S
    base = ~recent & (times >= t - (rule.recent_days + rule.baseline_days) * DAY_S)
    if base.sum() < rule.min_points:
        return None
    mu, sd = values[base].mean(), values[base].std(ddof=1)
    sigma = max(sd, 0.1, rule.min_sigma)  # body weight resolution: 0.1 kg
    z = mu
    for x in values[recent]:
        z = rule.lam * x + (1 - rule.lam) * z
    n = int(recent.sum())
    lam = rule.lam
    limit = rule.limit_sigma * sigma * math.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * n)))
    return z - mu, max(limit, rule.min_delta)


def test_ewma_detects_a_shift_and_ignores_noise() -> None:
    base = noisy_baseline()
    assert evaluate_baseline(EWMA, *series([*base, (29 * 24, 80.2)])) is None
    shifted = [*base, *daily([83.5] * 3, 29)]
    hit = evaluate_baseline(EWMA, *series(shifted))
    assert hit is not None
    assert hit.details["baseline_mean"] == pytest.approx(80, abs=0.3)
    assert hit.details["method"] == "ewma"
    assert "28-day baseline" in hit.message


def test_ewma_needs_enough_baseline_and_keeps_the_recent_days_out_of_it() -> None:
    base = noisy_baseline()
    # days 14–27 as baseline, a reading on day 31: the recent window opens on day 28
    assert evaluate_baseline(EWMA, *series([*base[-13:], (31 * 24, 90)])) is None  # 13 < 14
    assert evaluate_baseline(EWMA, *series([*base[-14:], (31 * 24, 90)])) is not None
    assert evaluate_baseline(EWMA, *series([*base[-14:], (30 * 24, 90)])) is None  # day 27 recent
    # A gain over the last three days is measured against the days before them.
    creeping = [*base, *daily([82.0, 84.0, 86.0], 28)]
    hit = evaluate_baseline(EWMA, *series(creeping))
    assert hit is not None
    assert hit.details["baseline_points"] == 27  # days 0–26; day 27 is one of the recent


def test_ewma_min_delta_gates_a_statistically_significant_but_small_change() -> None:
    quiet = daily([80.0 + 0.05 * (d % 2) for d in range(28)])
    small = [*quiet, *daily([81.0] * 3, 28)]  # far beyond 3σ, but only +1 kg
    assert evaluate_baseline(EWMA, *series(small)) is None
    assert evaluate_baseline(replace(EWMA, min_delta=0.5), *series(small)) is not None


def test_ewma_first_point_limit_is_shewhart_l_sigma() -> None:
    """After one recent sample the exact limit is λ·L·σ: it hits iff |x − μ| > L·σ."""
    rule = replace(EWMA, min_delta=0.0, recent_days=0.5)
    flat = daily([80.0, 81.0] * 14)  # μ 80.5, σ ≈ 0.509
    sd = float(np.std([80.0, 81.0] * 14, ddof=1))
    below = [*flat, (28 * 24, 80.5 + 3 * sd - 0.01)]
    above = [*flat, (28 * 24, 80.5 + 3 * sd + 0.01)]
    assert evaluate_baseline(rule, *series(below)) is None
    assert evaluate_baseline(rule, *series(above)) is not None


@pytest.mark.parametrize(
    ("direction", "shift", "hits"),
    [
        ("rise", +4, True),
        ("rise", -4, False),
        ("fall", -4, True),
        ("fall", +4, False),
        ("both", +4, True),
        ("both", -4, True),
    ],
)
def test_ewma_direction(direction: str, shift: float, hits: bool) -> None:
    points = [*noisy_baseline(), *daily([80 + shift] * 3, 29)]
    rule = replace(EWMA, direction=direction)
    assert (evaluate_baseline(rule, *series(points)) is not None) is hits


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(70, 90), min_size=15, max_size=120),
    st.floats(0.1, 0.3),
    st.sampled_from([0.25, 1.0, 3.0]),
    st.integers(2, 6),
)
def test_ewma_matches_the_definition(
    values: list[float], lam: float, recent_days: float, per_day: int
) -> None:
    """Both code paths (plain Python for small windows, numpy for long ones)."""
    rule = replace(  # both directions: the definition is about the size of the deviation
        EWMA, lam=lam, recent_days=recent_days, min_delta=0.0, min_points=5, direction="both"
    )
    times, vals = series([(i * 24 / per_day, v) for i, v in enumerate(values)])
    expected = ewma_reference(rule, times, vals)
    hit = evaluate_baseline(rule, times, vals)
    if expected is None:
        assert hit is None
        return
    deviation, limit = expected
    if abs(abs(deviation) - limit) > 1e-9:
        assert (hit is not None) is bool(abs(deviation) > limit)
    if hit is not None:
        assert hit.details["ewma"] - hit.details["baseline_mean"] == pytest.approx(
            deviation, abs=2e-3
        )


# --- CUSUM ------------------------------------------------------------------------------

CUSUM = CusumRule(
    "baseline:body_weight:cusum", "body_weight", 28, 3, 0.5, 5.0, 14, "rise", Priority.AMBER
)


def cusum_all(
    rule: CusumRule, points: list[tuple[float, float]]
) -> tuple[CusumState, list[RuleHit]]:
    state, hits = evaluate_cusum(CusumState(), rule, *series(points))
    return state, list(hits)


def test_cusum_stays_quiet_on_a_stable_patient() -> None:
    _, hits = cusum_all(CUSUM, noisy_baseline(days=200, seed=7))
    assert hits == []


def test_cusum_detects_a_one_sigma_shift_and_resets_after_the_alarm() -> None:
    base = noisy_baseline(days=40, sd=0.5, seed=3)
    shifted = [*base, *daily([80.6] * 30, 40)]  # about +1.2σ, sustained
    state, hits = cusum_all(CUSUM, shifted)
    assert hits, "a sustained shift must alarm"
    first = (hits[0].measured_at.timestamp() - T0) / DAY_S - 40
    assert first <= 10  # textbook ARL for a 1σ shift with k 0.5, h 5 is about 10
    assert hits[0].details["cusum_sigma"] > 5.0
    assert hits[0].details["method"] == "cusum"
    # reset after the alarm: the next alarm needs the sum to build up again from 0
    if len(hits) > 1:
        assert (hits[1].measured_at - hits[0].measured_at).days >= 2
    assert state.high <= 5.0


def test_cusum_watches_the_configured_side_only() -> None:
    points = [*noisy_baseline(days=30, seed=5), *daily([78.0] * 5, 30)]
    assert cusum_all(CUSUM, points)[1] == []
    _, hits = cusum_all(replace(CUSUM, direction="fall"), points)
    assert hits
    assert hits[0].direction == "low"


def test_cusum_without_enough_baseline_does_not_accumulate() -> None:
    state, hits = cusum_all(CUSUM, daily([80.0] * 5 + [90.0] * 5))
    assert (state.high, state.low, hits) == (0.0, 0.0, [])
    assert state.last_t == T0 + 9 * DAY_S


# --- evaluating a whole series or reading by reading: the same decisions ---------------

SERIES = st.lists(
    st.tuples(st.integers(0, 24 * 40), st.floats(70, 95)),
    min_size=1,
    max_size=60,
    unique_by=lambda p: p[0],
).map(sorted)


def stateless_rules() -> list[tuple[object, ChangeRule | SlopeRule | BaselineRule]]:
    return [
        (evaluate_change, WEIGHT_3D),
        (evaluate_change, WEIGHT_1D),
        (evaluate_slope, replace(SLOPE, per_day=0.1)),
        (evaluate_baseline, replace(EWMA, min_points=3, min_delta=0.5)),
    ]


@settings(max_examples=80, deadline=None)
@given(SERIES)
def test_stateless_rules_decide_the_same_on_a_prefix_or_as_of_now(
    points: list[tuple[int, float]],
) -> None:
    times, values = series(points)
    for i in range(len(points)):
        as_of = float(times[i])
        for name, rule in stateless_rules():
            if name is evaluate_change:
                assert isinstance(rule, ChangeRule)
                a = evaluate_change(rule, times[: i + 1], values[: i + 1])
                b = evaluate_change(rule, times, values, now=as_of)
            elif name is evaluate_slope:
                assert isinstance(rule, SlopeRule)
                a = evaluate_slope(rule, times[: i + 1], values[: i + 1])
                b = evaluate_slope(rule, times, values, now=as_of)
            else:
                assert isinstance(rule, BaselineRule)
                a = evaluate_baseline(rule, times[: i + 1], values[: i + 1])
                b = evaluate_baseline(rule, times, values, now=as_of)
            assert a == b


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 24 * 60), st.floats(75, 90)), min_size=1, max_size=80).map(
        sorted
    ),
    st.lists(st.integers(0, 80), max_size=6),
    st.sampled_from(["rise", "fall", "both"]),
)
def test_cusum_gives_the_same_alarms_however_the_series_is_split(
    points: list[tuple[int, float]], cuts: list[int], direction: str
) -> None:
    """Reading by reading (each call sees the window up to its end), or in arbitrary
    batches (including duplicate times split across calls), or as of a time."""
    rule = replace(CUSUM, min_points=3, h_sigma=2.0, direction=direction)
    times, values = series(points)
    whole_state, whole = evaluate_cusum(CusumState(), rule, times, values)
    state, hits = CusumState(), list[RuleHit]()
    for end in [*sorted(c for c in cuts if c <= len(points)), len(points)]:
        state, found = evaluate_cusum(state, rule, times[:end], values[:end])
        hits += found
    assert (state, hits) == (whole_state, list(whole))
    state, hits = CusumState(), []
    for i in range(len(points)):
        state, found = evaluate_cusum(state, rule, times, values, now=float(times[i]))
        hits += found
    assert (state, hits) == (whole_state, list(whole))
