"""Trend rules over a patient's own series: change over a window, slope, and deviation
from a personal baseline (EWMA). Inputs are numpy arrays of times (epoch seconds) and
values, oldest first, that end with the reading being evaluated.

* **change**: the newest value minus the lowest (for a rise) or highest (for a fall)
  value in the ``window_h`` hours before it — e.g. heart-failure weight gain > 2 kg in
  3 days (ESC HFA patient advice) and > 1.5 kg in 1 day;
* **slope**: least-squares slope in units per day over ``window_days``, with a minimum
  number of readings;
* **baseline (EWMA)**: the mean and standard deviation of the ``baseline_days`` before
  the newest ``recent_days`` define the patient's own normal; an EWMA (λ) of the recent
  readings beyond ``limit_sigma`` control limits (and at least ``min_delta`` in absolute
  terms) hits — clinical.md: λ 0.1–0.3, limits about 3σ, a rise of ≥ 2 kg against a
  28-day baseline for heart failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from alerts.rules.types import Priority, RuleHit

Array = npt.NDArray[np.float64]
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class ChangeRule:
    rule_id: str
    metric: str
    delta: float
    window_h: float
    direction: str  # "rise" or "fall"
    priority: Priority


@dataclass(frozen=True, slots=True)
class SlopeRule:
    rule_id: str
    metric: str
    per_day: float  # hit when the slope is at least this (rise) or at most minus this (fall)
    window_days: float
    min_points: int
    direction: str
    priority: Priority


@dataclass(frozen=True, slots=True)
class BaselineRule:
    rule_id: str
    metric: str
    baseline_days: float
    recent_days: float
    lam: float
    limit_sigma: float
    min_delta: float
    min_points: int
    direction: str  # "rise", "fall" or "both"
    priority: Priority


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def evaluate_change(rule: ChangeRule, times: Array, values: Array) -> RuleHit | None:
    t, v = times[-1], values[-1]
    start = np.searchsorted(times, t - rule.window_h * 3600.0, side="left")
    earlier = values[start:-1]
    if earlier.size == 0:
        return None
    if rule.direction == "rise":
        reference = float(earlier.min())
        change = v - reference
    else:
        reference = float(earlier.max())
        change = reference - v
    if change <= rule.delta:
        return None
    verb = "up" if rule.direction == "rise" else "down"
    return RuleHit(
        rule_id=rule.rule_id,
        kind="change",
        metric=rule.metric,
        priority=rule.priority,
        value=float(v),
        measured_at=_at(t),
        direction="high" if rule.direction == "rise" else "low",
        message=(
            f"{rule.metric} {verb} {change:.1f} in {rule.window_h:g} h "
            f"(from {reference:g} to {v:g}; limit {rule.delta:g})"
        ),
        details={"change": round(float(change), 3), "reference": reference},
    )


def evaluate_slope(rule: SlopeRule, times: Array, values: Array) -> RuleHit | None:
    t = times[-1]
    start = np.searchsorted(times, t - rule.window_days * DAY_S, side="left")
    x, y = times[start:] / DAY_S, values[start:]
    if x.size < max(rule.min_points, 2) or np.ptp(x) == 0:
        return None
    xm = x - x.mean()
    slope = float((xm * (y - y.mean())).sum() / (xm * xm).sum())
    if (rule.direction == "rise" and slope < rule.per_day) or (
        rule.direction == "fall" and slope > -rule.per_day
    ):
        return None
    return RuleHit(
        rule_id=rule.rule_id,
        kind="slope",
        metric=rule.metric,
        priority=rule.priority,
        value=float(values[-1]),
        measured_at=_at(t),
        direction="high" if rule.direction == "rise" else "low",
        message=f"{rule.metric} trending {slope:+.2f} per day over {rule.window_days:g} days",
        details={"slope_per_day": round(slope, 4), "points": int(x.size)},
    )


def evaluate_baseline(rule: BaselineRule, times: Array, values: Array) -> RuleHit | None:
    t = times[-1]
    recent_from = t - rule.recent_days * DAY_S
    base_from = recent_from - rule.baseline_days * DAY_S
    b0 = np.searchsorted(times, base_from, side="left")
    r0 = np.searchsorted(times, recent_from, side="left")
    baseline = values[b0:r0]
    recent = values[r0:]
    if baseline.size < rule.min_points or recent.size == 0:
        return None
    mean = float(baseline.mean())
    sd = float(baseline.std(ddof=1)) if baseline.size > 1 else 0.0
    ewma = mean
    for value in recent:  # a handful of recent readings: a Python loop is fastest here
        ewma = rule.lam * float(value) + (1 - rule.lam) * ewma
    # Steady-state EWMA control limit: L·σ·sqrt(λ / (2 − λ)).
    limit = rule.limit_sigma * sd * (rule.lam / (2 - rule.lam)) ** 0.5
    deviation = ewma - mean
    threshold = max(limit, rule.min_delta)
    rising = deviation > threshold and rule.direction in ("rise", "both")
    falling = -deviation > threshold and rule.direction in ("fall", "both")
    if not (rising or falling):
        return None
    return RuleHit(
        rule_id=rule.rule_id,
        kind="baseline",
        metric=rule.metric,
        priority=rule.priority,
        value=float(values[-1]),
        measured_at=_at(t),
        direction="high" if rising else "low",
        message=(
            f"{rule.metric} {deviation:+.1f} from this patient's {rule.baseline_days:g}-day "
            f"baseline {mean:.1f} (EWMA {ewma:.1f}, limit ±{threshold:.1f})"
        ),
        details={
            "baseline_mean": round(mean, 3),
            "baseline_sd": round(sd, 3),
            "ewma": round(ewma, 3),
            "limit": round(threshold, 3),
        },
    )
