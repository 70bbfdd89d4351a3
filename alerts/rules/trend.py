"""Trend rules over one patient's own series: change over a window, slope, and deviation
from a personal baseline (EWMA and CUSUM).

Every function takes ``times`` (epoch seconds, ``float64``) and ``values`` (canonical
unit), oldest first, and decides about the **newest sample at or before** ``now`` (all of
them when ``now`` is ``None``): samples after ``now`` are never looked at, so evaluating
a whole stored series as of a time gives the same answer as evaluating the readings that
had arrived by then. Change, slope and EWMA are stateless; CUSUM carries its accumulators
in a :class:`CusumState` and consumes each sample once.

* **change** — the newest value minus the *lowest* value measured in the ``window_h``
  hours before it (for a rise; for a fall, the *highest* value minus the newest). It hits
  when that exceeds ``delta`` (strictly: "more than 2 kg"). Heart failure: > 2 kg in
  72 h (ESC HFA patient advice), > 1.5 kg in 24 h.
* **slope** — ordinary least squares over the samples of the last ``window_days``
  (inclusive), in units per day; needs ``min_points`` samples spanning more than an
  instant; hits when the slope is at least ``per_day`` (rise) or at most ``−per_day``.
* **EWMA** — the patient's normal is the mean μ and standard deviation σ of the
  ``baseline_days`` *before* the last ``recent_days`` (the guard keeps a developing change
  out of its own baseline), with at least ``min_points`` samples; σ is floored at the
  metric's display resolution (and ``min_sigma``). Starting from μ, z ← λ·x + (1 − λ)·z
  over the recent samples; the control limit is the exact one after n samples,
  L·σ·√(λ/(2−λ)·(1 − (1−λ)^2n)). It hits when |z − μ| is beyond the limit *and* at least
  ``min_delta`` — docs/references.md (trend detection): λ 0.1–0.3, L ≈ 3, ≥ 2 kg
  against a 28-day baseline.
  The recent window restarts the statistic, so once the readings that caused an alarm
  leave it, the EWMA starts again from the baseline.
* **CUSUM** — each new sample is standardised against the same guarded baseline,
  e = (x − μ)/σ; S⁺ ← max(0, S⁺ + e − k), S⁻ ← max(0, S⁻ − e − k); an alarm when the
  watched side exceeds h (k ≈ 0.5, h ≈ 4–5, in σ), and both sums **reset to 0 after an
  alarm**. A sample without enough baseline resets the sums.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from alerts.rules.types import Array, Priority, RuleHit, utc
from homeward.metrics import CATALOGUE

DAY_S = 86_400.0
_SMALL = 48  # below this many samples plain Python beats numpy's per-call overhead


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
    direction: str  # "rise" or "fall"
    priority: Priority


@dataclass(frozen=True, slots=True)
class BaselineRule:
    """EWMA against a guarded personal baseline (see the module docstring)."""

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
    min_sigma: float = 0.0


@dataclass(frozen=True, slots=True)
class CusumRule:
    """Tabular CUSUM against a guarded personal baseline; k and h in baseline σ."""

    rule_id: str
    metric: str
    baseline_days: float
    guard_days: float
    k_sigma: float
    h_sigma: float
    min_points: int
    direction: str  # "rise", "fall" or "both"
    priority: Priority
    min_sigma: float = 0.0


@dataclass(frozen=True, slots=True)
class CusumState:
    high: float = 0.0  # S⁺, in σ
    low: float = 0.0  # S⁻, in σ
    last_t: float = -math.inf  # newest sample consumed
    at_last_t: int = 0  # how many samples with time == last_t were consumed


def _end(times: Array, now: float | None) -> int:
    return len(times) if now is None else int(times.searchsorted(now, "right"))


def _floor(metric: str, min_sigma: float) -> float:
    spec = CATALOGUE.get(metric)
    return max(min_sigma, 10.0**-spec.decimals if spec else 0.0)


def _mean_sd(values: Array) -> tuple[float, float]:
    n = len(values)
    if n <= _SMALL:
        xs = values.tolist()
        mean = sum(xs) / n
        var = (sum(map(operator.mul, xs, xs)) - n * mean * mean) / (n - 1)
    else:
        mean = float(values.mean())
        d = values - mean
        var = float(d @ d) / (n - 1)
    return mean, math.sqrt(max(var, 0.0))


def evaluate_change(
    rule: ChangeRule, times: Array, values: Array, now: float | None = None
) -> RuleHit | None:
    n = _end(times, now)
    if n < 2:
        return None
    t, v = times.item(n - 1), values.item(n - 1)
    start = int(times.searchsorted(t - rule.window_h * 3600.0, "left"))
    if start >= n - 1:
        return None
    earlier = values[start : n - 1]
    rise = rule.direction == "rise"
    if len(earlier) <= 16:
        reference = min(earlier.tolist()) if rise else max(earlier.tolist())
    else:
        reference = float(earlier.min() if rise else earlier.max())
    change = v - reference if rise else reference - v
    if not change > rule.delta:
        return None
    verb = "up" if rise else "down"
    return _hit(
        rule.rule_id,
        "change",
        rule.metric,
        rule.priority,
        v,
        t,
        "high" if rise else "low",
        f"{_name(rule.metric)} {verb} {change:.1f} in {rule.window_h:g} h "
        f"(from {reference:g} to {v:g}; limit more than {rule.delta:g})",
        {"change": round(change, 3), "reference": reference, "window_h": rule.window_h},
    )


def evaluate_slope(
    rule: SlopeRule, times: Array, values: Array, now: float | None = None
) -> RuleHit | None:
    n = _end(times, now)
    if n == 0:
        return None
    t = times.item(n - 1)
    start = int(times.searchsorted(t - rule.window_days * DAY_S, "left"))
    count = n - start
    if count < max(rule.min_points, 2) or times.item(start) == t:
        return None
    x, y = times[start:n], values[start:n]
    if count <= _SMALL:
        xs = [(ti - t) / DAY_S for ti in x.tolist()]  # days before the newest: small
        ys = y.tolist()
        sx, sy = sum(xs), sum(ys)
        sxy = sum(map(operator.mul, xs, ys)) - sx * sy / count
        sxx = sum(map(operator.mul, xs, xs)) - sx * sx / count
    else:
        xm = (x - t) / DAY_S
        xm = xm - xm.mean()
        sxy, sxx = float(xm @ (y - y.mean())), float(xm @ xm)
    if sxx <= 0:
        return None
    slope = sxy / sxx
    rise = rule.direction == "rise"
    if (rise and slope < rule.per_day) or (not rise and slope > -rule.per_day):
        return None
    return _hit(
        rule.rule_id,
        "slope",
        rule.metric,
        rule.priority,
        values.item(n - 1),
        t,
        "high" if rise else "low",
        f"{_name(rule.metric)} trending {slope:+.2f} per day over {rule.window_days:g} days "
        f"({count} readings; limit {'+' if rise else '−'}{rule.per_day:g} per day)",
        {"slope_per_day": round(slope, 4), "points": count, "limit_per_day": rule.per_day},
    )


def evaluate_baseline(
    rule: BaselineRule, times: Array, values: Array, now: float | None = None
) -> RuleHit | None:
    """EWMA deviation from the patient's own baseline (stateless)."""
    n = _end(times, now)
    if n == 0:
        return None
    t = times.item(n - 1)
    recent_from = t - rule.recent_days * DAY_S
    b0 = int(times.searchsorted(recent_from - rule.baseline_days * DAY_S, "left"))
    r0 = int(times.searchsorted(recent_from, "left"))
    if r0 - b0 < max(rule.min_points, 2) or r0 >= n:
        return None
    mean, sd = _mean_sd(values[b0:r0])
    sigma = max(sd, _floor(rule.metric, rule.min_sigma))
    lam, k = rule.lam, n - r0
    if k <= _SMALL:
        z = mean
        for x in values[r0:n].tolist():
            z = lam * x + (1.0 - lam) * z
    else:  # the same sum, vectorised: z = (1−λ)^k·μ + Σ λ(1−λ)^(k−1−j)·x_j
        weights = lam * (1.0 - lam) ** np.arange(k - 1, -1, -1, dtype=np.float64)
        z = (1.0 - lam) ** k * mean + float(weights @ values[r0:n])
    limit = rule.limit_sigma * sigma * math.sqrt(lam / (2.0 - lam) * (1.0 - (1.0 - lam) ** (2 * k)))
    deviation = z - mean
    size = abs(deviation)
    if not (size > limit and size >= rule.min_delta) or not _watched(rule.direction, deviation):
        return None
    return _hit(
        rule.rule_id,
        "baseline",
        rule.metric,
        rule.priority,
        values.item(n - 1),
        t,
        "high" if deviation > 0 else "low",
        f"{_name(rule.metric)} {deviation:+.1f} from this patient's {rule.baseline_days:g}-day "
        f"baseline {mean:.1f} (EWMA {z:.1f}; limit ±{max(limit, rule.min_delta):.1f})",
        {
            "method": "ewma",
            "baseline_mean": round(mean, 3),
            "baseline_sd": round(sd, 3),
            "baseline_points": r0 - b0,
            "ewma": round(z, 3),
            "limit": round(max(limit, rule.min_delta), 3),
        },
    )


def evaluate_cusum(
    state: CusumState, rule: CusumRule, times: Array, values: Array, now: float | None = None
) -> tuple[CusumState, tuple[RuleHit, ...]]:
    """Consume every sample not yet seen (up to ``now``), in time order; returns the new
    state and an alarm for each sample that crossed h. Splitting a series into calls in
    any way gives the same alarms and the same final state as one call."""
    n = _end(times, now)
    first = int(times.searchsorted(state.last_t, "left")) + state.at_last_t
    high, low, last_t, at_last = state.high, state.low, state.last_t, state.at_last_t
    floor = _floor(rule.metric, rule.min_sigma)
    span, guard = rule.baseline_days * DAY_S, rule.guard_days * DAY_S
    hits: list[RuleHit] = []
    for i in range(first, n):  # usually one new sample per reading
        t, x = times.item(i), values.item(i)
        at_last = at_last + 1 if t == last_t else 1
        last_t = t
        b1 = int(times.searchsorted(t - guard, "left"))
        b0 = int(times.searchsorted(t - guard - span, "left"))
        if b1 - b0 < max(rule.min_points, 2):
            high = low = 0.0
            continue
        mean, sd = _mean_sd(values[b0:b1])
        sigma = max(sd, floor)
        e = (x - mean) / sigma
        high = max(0.0, high + e - rule.k_sigma)
        low = max(0.0, low - e - rule.k_sigma)
        up = high > rule.h_sigma and rule.direction in ("rise", "both")
        down = low > rule.h_sigma and rule.direction in ("fall", "both")
        if up or down:
            hits.append(_cusum_hit(rule, t, x, mean, sd, high if up else -low))
            high = low = 0.0  # reset after an alarm
    return CusumState(high, low, last_t, at_last), tuple(hits)


def evaluate_cusum_window(
    rule: CusumRule, times: Array, values: Array, now: float | None = None
) -> RuleHit | None:
    """CUSUM as the rule engine runs it: recomputed from the start of the window it is
    given (the engine keeps 35 days) on every evaluation, so the decision is a function of
    the stored readings alone — the same on any worker, after any restart, in any arrival
    order. The alarm is the newest sample's: a hit only if the sums cross h at that
    sample (they reset after every alarm, so the next one needs fresh evidence). Each
    sample costs one baseline mean and σ: meant for spot readings (a few a day)."""
    n = _end(times, now)
    if n == 0:
        return None
    _, hits = evaluate_cusum(CusumState(), rule, times[:n], values[:n])
    if hits and hits[-1].measured_at == utc(times.item(n - 1)):
        return hits[-1]
    return None


def _cusum_hit(rule: CusumRule, t: float, x: float, mean: float, sd: float, s: float) -> RuleHit:
    way = "above" if s > 0 else "below"
    return _hit(
        rule.rule_id,
        "baseline",
        rule.metric,
        rule.priority,
        x,
        t,
        "high" if s > 0 else "low",
        f"{_name(rule.metric)} persistently {way} this patient's {rule.baseline_days:g}-day "
        f"baseline {mean:.1f} (CUSUM {abs(s):.1f}σ > {rule.h_sigma:g}σ)",
        {
            "method": "cusum",
            "baseline_mean": round(mean, 3),
            "baseline_sd": round(sd, 3),
            "cusum_sigma": round(s, 3),
            "h_sigma": rule.h_sigma,
        },
    )


def _watched(direction: str, deviation: float) -> bool:
    return direction == "both" or (direction == "rise") == (deviation > 0)


def _name(metric: str) -> str:
    spec = CATALOGUE.get(metric)
    return spec.display if spec else metric


def _hit(
    rule_id: str,
    kind: str,
    metric: str,
    priority: Priority,
    value: float,
    t: float,
    direction: str,
    message: str,
    details: dict[str, Any],
) -> RuleHit:
    return RuleHit(rule_id, kind, metric, priority, value, utc(t), message, direction, details)
