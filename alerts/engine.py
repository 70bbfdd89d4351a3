"""The rule engine: per-patient windows in memory, evaluated on every committed batch.

``evaluate`` is a function of the engine's state and the batch: it processes readings in
(patient, time) order, so the decisions do not depend on how readings were split into
batches or interleaved between patients. The state is rebuilt from the database for a
patient the engine has not seen (a restarted worker decides as one that never stopped)
and whenever the patient's rules change. Late readings update the history windows but
never raise an alert as if current: they become items for review instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from alerts.careplans import (
    BaselineConfig,
    ChangeConfig,
    EffectiveRule,
    News2Config,
    SlopeConfig,
    ThresholdConfig,
    effective_rules,
)
from alerts.news2 import Band, VitalSet, score_news2
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
from alerts.series import Series
from homeward.domain import Consciousness

HISTORY_S = 35 * 86_400.0  # longest window (28-day baseline + recent days) with margin
MAX_SAMPLES = 4_096  # bounds 1 Hz streams: thresholds and NEWS2 need only the newest
NEWS2_METRICS = ("respiratory_rate", "spo2", "systolic_bp", "heart_rate", "body_temperature")


@dataclass(frozen=True, slots=True)
class Reading:
    """What the engine needs of a stored reading."""

    patient_id: int
    metric: str
    time: datetime
    value: float
    late: bool = False
    on_oxygen: bool | None = None
    consciousness: str | None = None


@dataclass
class CompiledRules:
    thresholds: dict[str, list[ThresholdRule]] = field(default_factory=dict)
    changes: dict[str, list[ChangeRule]] = field(default_factory=dict)
    slopes: dict[str, list[SlopeRule]] = field(default_factory=dict)
    baselines: dict[str, list[BaselineRule]] = field(default_factory=dict)
    news2: News2Config | None = None


def compile_rules(rules: Mapping[str, EffectiveRule]) -> CompiledRules:
    out = CompiledRules()
    for effective in rules.values():
        r = effective.rule
        if not r.enabled:
            continue
        if isinstance(r, ThresholdConfig):
            out.thresholds.setdefault(r.metric, []).append(
                ThresholdRule(
                    r.id,
                    r.metric,
                    r.direction,
                    r.limit,
                    Priority(r.priority),
                    r.hysteresis,
                    r.sustained_min * 60,
                    r.metric,
                    r.inclusive,
                )
            )
        elif isinstance(r, ChangeConfig):
            out.changes.setdefault(r.metric, []).append(
                ChangeRule(r.id, r.metric, r.delta, r.window_h, r.direction, Priority(r.priority))
            )
        elif isinstance(r, SlopeConfig):
            out.slopes.setdefault(r.metric, []).append(
                SlopeRule(
                    r.id,
                    r.metric,
                    r.per_day,
                    r.window_days,
                    r.min_points,
                    r.direction,
                    Priority(r.priority),
                )
            )
        elif isinstance(r, BaselineConfig):
            out.baselines.setdefault(r.metric, []).append(
                BaselineRule(
                    r.id,
                    r.metric,
                    r.baseline_days,
                    r.recent_days,
                    r.lam,
                    r.limit_sigma,
                    r.min_delta,
                    r.min_points,
                    r.direction,
                    Priority(r.priority),
                )
            )
        elif isinstance(r, News2Config):
            out.news2 = r
    return out


@dataclass
class PatientState:
    patient_id: int
    version: int
    rules: CompiledRules
    series: dict[str, Series] = field(default_factory=dict)
    thresholds: dict[str, ThresholdState] = field(default_factory=dict)
    news2_latest: dict[str, tuple[float, Any]] = field(default_factory=dict)

    def series_for(self, metric: str) -> Series:
        found = self.series.get(metric)
        if found is None:
            found = self.series[metric] = Series(HISTORY_S, MAX_SAMPLES)
        return found


@dataclass
class Decisions:
    hits: list[tuple[int, RuleHit]] = field(default_factory=list)
    clears: list[tuple[int, Cleared]] = field(default_factory=list)
    reviews: list[tuple[int, RuleHit]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PatientSnapshot:
    """What the database says about a patient, to (re)build its state."""

    patient_id: int
    version: int
    conditions: tuple[str, ...]
    overrides: Mapping[str, Mapping[str, Any]]
    history: Iterable[tuple[str, datetime, float, bool | None, str | None]]
    breached_rules: frozenset[str]


class RuleEngine:
    def __init__(self) -> None:
        self.patients: dict[int, PatientState] = {}

    def needs(self, versions: Mapping[int, int]) -> list[int]:
        """Patients to (re)load: unknown, or whose rules changed since loaded."""
        return [
            pid
            for pid, version in versions.items()
            if pid not in self.patients or self.patients[pid].version != version
        ]

    def load(self, snapshot: PatientSnapshot) -> None:
        rules = compile_rules(effective_rules(snapshot.conditions, snapshot.overrides))
        state = PatientState(snapshot.patient_id, snapshot.version, rules)
        for metric, at, value, oxygen, consciousness in snapshot.history:
            t = at.timestamp()
            state.series_for(metric).add(t, value)
            _remember_news2(state, metric, t, value, oxygen, consciousness)
        for metric_rules in rules.thresholds.values():
            for rule in metric_rules:
                if rule.rule_id in snapshot.breached_rules:
                    state.thresholds[rule.rule_id] = ThresholdState(breached=True)
        self.patients[snapshot.patient_id] = state

    def forget(self, patient_ids: Iterable[int]) -> None:
        for pid in patient_ids:
            self.patients.pop(pid, None)

    def evaluate(self, readings: Iterable[Reading]) -> Decisions:
        decisions = Decisions()
        for r in sorted(readings, key=lambda x: (x.patient_id, x.time, x.metric)):
            state = self.patients.get(r.patient_id)
            if state is not None:
                self._evaluate_one(state, r, decisions)
        return decisions

    def _evaluate_one(self, state: PatientState, r: Reading, out: Decisions) -> None:
        t = r.time.timestamp()
        series = state.series_for(r.metric)
        newest = series.add(t, r.value)
        _remember_news2(state, r.metric, t, r.value, r.on_oxygen, r.consciousness)
        found: list[RuleHit] = []
        for rule in state.rules.thresholds.get(r.metric, ()):
            if r.late:
                _, decision = evaluate_threshold(rule, ThresholdState(), r.value, r.time)
                if isinstance(decision, RuleHit):
                    found.append(decision)
                continue
            previous = state.thresholds.get(rule.rule_id, ThresholdState())
            state.thresholds[rule.rule_id], decision = evaluate_threshold(
                rule, previous, r.value, r.time
            )
            if isinstance(decision, Cleared):
                out.clears.append((state.patient_id, decision))
            elif decision is not None:
                found.append(decision)
        if newest or r.late:
            times = series.times if newest else series.times[series.times <= t]
            values = series.values[: len(times)]
            for change in state.rules.changes.get(r.metric, ()):
                if (hit := evaluate_change(change, times, values)) is not None:
                    found.append(hit)
            for slope in state.rules.slopes.get(r.metric, ()):
                if (hit := evaluate_slope(slope, times, values)) is not None:
                    found.append(hit)
            for baseline in state.rules.baselines.get(r.metric, ()):
                if (hit := evaluate_baseline(baseline, times, values)) is not None:
                    found.append(hit)
        news2 = state.rules.news2
        if news2 is not None and r.metric in NEWS2_METRICS:
            hit = _news2_hit(state, news2, t)
            if hit is not None:
                found.append(hit)
        target = out.reviews if r.late else out.hits
        target.extend((state.patient_id, hit) for hit in found)


def _remember_news2(
    state: PatientState,
    metric: str,
    t: float,
    value: float,
    oxygen: bool | None,
    consciousness: str | None,
) -> None:
    if metric not in NEWS2_METRICS:
        return
    for key, item in ((metric, value), ("on_oxygen", oxygen), ("consciousness", consciousness)):
        if item is None:
            continue
        latest = state.news2_latest.get(key)
        if latest is None or t >= latest[0]:
            state.news2_latest[key] = (t, item)


def _news2_hit(state: PatientState, config: News2Config, t: float) -> RuleHit | None:
    window = config.window_min * 60
    fresh = {k: v for k, (at, v) in state.news2_latest.items() if abs(t - at) <= window}
    level = fresh.get("consciousness")
    vitals = VitalSet(
        respiratory_rate=fresh.get("respiratory_rate"),
        spo2=fresh.get("spo2"),
        spo2_scale=config.spo2_scale,
        on_oxygen=fresh.get("on_oxygen"),
        systolic_bp=fresh.get("systolic_bp"),
        heart_rate=fresh.get("heart_rate"),
        consciousness=Consciousness(level) if level else None,
        body_temperature=fresh.get("body_temperature"),
    )
    score = score_news2(vitals)
    if score.band is Band.LOW:
        return None
    partial = f" (partial: {', '.join(score.missing)} missing)" if score.partial else ""
    return RuleHit(
        rule_id=config.id,
        kind="news2",
        metric=None,
        priority=Priority.RED if score.band is Band.HIGH else Priority.AMBER,
        value=float(score.score),
        measured_at=datetime.fromtimestamp(t, UTC),
        direction="high",
        message=f"NEWS2 {score.score} ({score.band.value}){partial}",
        details={
            "points": dict(score.points),
            "missing": list(score.missing),
            "band": score.band.value,
            "partial": score.partial,
        },
    )
