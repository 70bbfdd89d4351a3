"""The rule engine: per-patient windows in memory, evaluated on every committed batch.

``evaluate`` is a function of the engine's state and the batch: it processes readings in
(patient, time) order, so the decisions do not depend on how readings were split into
batches or interleaved between patients. The state is rebuilt from the database for a
patient the engine has not seen (a restarted worker decides as one that never stopped),
whenever the patient's rules or conditions change, and whenever another worker evaluated
the patient since this one did (the patient's ``seq``, see alerts/store.py): so any
number of workers decide as one. Late readings update the history windows but never
raise an alert as if current: they become items for review instead.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from alerts.careplans import (
    BaselineConfig,
    ChangeConfig,
    EffectiveRule,
    News2Config,
    SlopeConfig,
    Spo2TargetConfig,
    ThresholdConfig,
    effective_rules,
)
from alerts.news2 import (
    alert_priority,
    consciousness_points,
    oxygen_points,
    pulse_points,
    respiratory_rate_points,
    score_points,
    spo2_points,
    systolic_points,
    temperature_points,
)
from alerts.quality import RetakeRequest, questioning
from alerts.rules.threshold import ThresholdRule, ThresholdState, beyond, evaluate_threshold
from alerts.rules.trend import (
    BaselineRule,
    ChangeRule,
    CusumRule,
    SlopeRule,
    evaluate_baseline,
    evaluate_change,
    evaluate_cusum_window,
    evaluate_slope,
)
from alerts.rules.types import Cleared, Priority, RuleHit
from alerts.series import Series
from homeward.domain import Consciousness

HISTORY_S = 35 * 86_400.0  # longest window (28-day baseline + recent days) with margin
MAX_SAMPLES = 4_096  # bounds 1 Hz streams: thresholds and NEWS2 need only the newest
NEWS2_METRICS = frozenset(
    ("respiratory_rate", "spo2", "systolic_bp", "heart_rate", "body_temperature")
)


class Observation(Protocol):
    """What the engine needs of a stored reading (ingest's StoredReading is one)."""

    @property
    def patient_id(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def value(self) -> float: ...
    @property
    def late(self) -> bool: ...
    @property
    def on_oxygen(self) -> bool | None: ...
    @property
    def consciousness(self) -> str | None: ...
    @property
    def device_id(self) -> str: ...
    @property
    def flags(self) -> Sequence[str] | None: ...


@dataclass(frozen=True, slots=True)
class ManualObservation:
    """An :class:`Observation` made by hand (tests, the rule-cost benchmark). Not
    ``homeward.domain.Reading``, which is one metric of a device's message."""

    patient_id: int
    metric: str
    time: datetime
    value: float
    late: bool = False
    on_oxygen: bool | None = None
    consciousness: str | None = None
    device_id: str = "device"
    flags: Sequence[str] | None = None


TrendEvaluator = Callable[[Any, Any, Any], RuleHit | None]


@dataclass
class CompiledRules:
    thresholds: dict[str, list[ThresholdRule]] = field(default_factory=dict)
    # per metric, every trend rule with its evaluator: change, then slope, then baseline
    trends: dict[str, list[tuple[TrendEvaluator, Any]]] = field(default_factory=dict)
    news2: News2Config | None = None
    # a care plan that asks for the SpO2 target (COPD) before it is recorded: NEWS2 leaves
    # SpO2 out, and each SpO2 reading asks for the decision
    spo2_target_asked: Spo2TargetConfig | None = None
    spo2_target: Spo2TargetConfig | None = None  # recorded: above it on oxygen alerts


def compile_rules(rules: Mapping[str, EffectiveRule]) -> CompiledRules:
    """Each enabled rule built by its configuration's ``to_rule`` (alerts/careplans.py), so
    every setting a clinician saves reaches the rule that decides."""
    out = CompiledRules()
    trends: dict[str, list[tuple[int, TrendEvaluator, Any]]] = {}
    for effective in rules.values():
        r = effective.rule
        if not r.enabled:
            continue
        if isinstance(r, ThresholdConfig):
            out.thresholds.setdefault(r.metric, []).append(r.to_rule())
        elif isinstance(r, ChangeConfig | SlopeConfig | BaselineConfig):
            rule = r.to_rule()
            order, evaluator = _TREND_EVALUATORS[type(rule)]
            trends.setdefault(r.metric, []).append((order, evaluator, rule))
        elif isinstance(r, News2Config):
            out.news2 = r
        elif isinstance(r, Spo2TargetConfig):
            if r.recorded:
                out.spo2_target = r
            else:
                out.spo2_target_asked = r
    for metric, found in trends.items():
        found.sort(key=lambda item: item[0])  # change, then slope, then baseline (stable)
        out.trends[metric] = [(evaluator, rule) for _, evaluator, rule in found]
    return out


_TREND_EVALUATORS: dict[type, tuple[int, TrendEvaluator]] = {
    ChangeRule: (0, evaluate_change),
    SlopeRule: (1, evaluate_slope),
    BaselineRule: (2, evaluate_baseline),
    CusumRule: (2, evaluate_cusum_window),
}


@functools.lru_cache(maxsize=1024)
def _compiled(conditions: tuple[str, ...], overrides_json: str) -> CompiledRules:
    """Most patients share a handful of condition sets and few overrides: compile each
    combination once (10,000 patients load in a fraction of the time). The compiled
    rules are shared, so they are never changed after compiling."""
    return compile_rules(effective_rules(conditions, json.loads(overrides_json)))


@dataclass(frozen=True, slots=True)
class Freshness:
    """What a patient's in-memory state was built from: the rule state's ``seq`` (bumped
    by every batch that evaluated the patient, whichever worker), the version of the
    patient's rule overrides and their conditions."""

    seq: int
    version: int
    conditions: tuple[str, ...]


@dataclass
class PatientState:
    patient_id: int
    version: int
    rules: CompiledRules
    seq: int = 0
    conditions: tuple[str, ...] = ()
    series: dict[str, Series] = field(default_factory=dict)
    thresholds: dict[str, ThresholdState] = field(default_factory=dict)
    news2_latest: dict[str, _Latest] = field(default_factory=dict)

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
    retakes: list[RetakeRequest] = field(default_factory=list)
    # patients whose evaluation raised: their readings' decisions are left out (none of
    # them half-made), their state forgotten; the error, to be shown
    failed: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PatientSnapshot:
    """What the database says about a patient, to (re)build its state."""

    patient_id: int
    version: int
    conditions: tuple[str, ...]
    overrides: Mapping[str, Mapping[str, Any]]
    history: Iterable[tuple[str, datetime, float, bool | None, str | None]]
    breached_rules: frozenset[str]
    seq: int = 0


class RuleEngine:
    def __init__(self) -> None:
        self.patients: dict[int, PatientState] = {}

    def needs(self, current: Mapping[int, Freshness]) -> list[int]:
        """Patients to (re)load: unknown, whose rules or conditions changed since loaded,
        or whom another worker evaluated since (their ``seq`` moved on)."""
        out = []
        for pid, fresh in current.items():
            state = self.patients.get(pid)
            if (
                state is None
                or state.seq != fresh.seq
                or state.version != fresh.version
                or state.conditions != tuple(sorted(fresh.conditions))
            ):
                out.append(pid)
        return out

    def advance(self, seqs: Mapping[int, int]) -> None:
        """This worker's batch moved these patients on to ``seq`` (committed with it)."""
        for pid, seq in seqs.items():
            state = self.patients.get(pid)
            if state is not None:
                state.seq = seq

    def load(self, snapshot: PatientSnapshot) -> None:
        conditions = tuple(sorted(snapshot.conditions))
        rules = _compiled(conditions, json.dumps(snapshot.overrides, sort_keys=True))
        state = PatientState(snapshot.patient_id, snapshot.version, rules, snapshot.seq, conditions)
        for metric, at, value, oxygen, consciousness in snapshot.history:  # good ones only
            t = at.timestamp()
            state.series_for(metric).add(t, value)
            _remember_news2(state, metric, t, value, oxygen, consciousness)
        for metric, metric_rules in rules.thresholds.items():
            series = state.series.get(metric)
            for rule in metric_rules:
                state.thresholds[rule.rule_id] = _threshold_state(
                    rule, series, rule.rule_id in snapshot.breached_rules
                )
        self.patients[snapshot.patient_id] = state

    def forget(self, patient_ids: Iterable[int]) -> None:
        for pid in patient_ids:
            self.patients.pop(pid, None)

    def evaluate(self, readings: Iterable[Observation]) -> Decisions:
        """Decisions for the readings, patient by patient. A rule that raises costs only
        its patient's decisions of this batch (``Decisions.failed``): every other
        patient's are made as usual."""
        decisions = Decisions()
        current, marks = -1, (0, 0, 0, 0)
        for r in sorted(readings, key=lambda x: (x.patient_id, x.time, x.metric)):
            pid = r.patient_id
            if pid != current:
                current = pid
                marks = (
                    len(decisions.hits),
                    len(decisions.clears),
                    len(decisions.reviews),
                    len(decisions.retakes),
                )
            if pid in decisions.failed:
                continue
            state = self.patients.get(pid)
            if state is None:
                continue
            try:
                self._evaluate_one(state, r, decisions)
            except Exception as exc:  # a bug in a rule: shown, never fatal to the others
                del decisions.hits[marks[0] :]
                del decisions.clears[marks[1] :]
                del decisions.reviews[marks[2] :]
                del decisions.retakes[marks[3] :]
                self.patients.pop(pid, None)  # half-updated: reloaded next time
                decisions.failed[pid] = f"{type(exc).__name__}: {exc}"[:500]
        return decisions

    def _evaluate_one(self, state: PatientState, r: Observation, out: Decisions) -> None:
        metric, value, late = r.metric, r.value, r.late
        if r.flags and (flags := questioning(metric, r.flags)):
            # Never a clinical alarm, nor a window or baseline, from a questionable
            # reading: the device that took it is asked for a retake (alerts/quality.py).
            if not late:
                out.retakes.append(
                    RetakeRequest(state.patient_id, r.device_id, metric, r.time, flags)
                )
            return
        t = r.time.timestamp()
        series = state.series_for(metric)
        newest = series.add(t, value)
        _remember_news2(state, metric, t, value, r.on_oxygen, r.consciousness)
        rules = state.rules
        found: list[RuleHit] = []
        for rule in rules.thresholds.get(metric, ()):
            if late:
                _, decision = evaluate_threshold(rule, _INSIDE, value, r.time)
                if isinstance(decision, RuleHit):
                    found.append(decision)
                continue
            previous = state.thresholds.get(rule.rule_id, _INSIDE)
            if previous.since is None and not previous.breached and not beyond(rule, value):
                # the common case — inside, and was inside: only the newest time moves
                if previous.last_at is None or r.time >= previous.last_at:
                    state.thresholds[rule.rule_id] = ThresholdState(False, None, r.time)
                continue
            state.thresholds[rule.rule_id], decision = evaluate_threshold(
                rule, previous, value, r.time
            )
            if isinstance(decision, Cleared):
                out.clears.append((state.patient_id, decision))
            elif decision is not None:
                found.append(decision)
        if (newest or late) and (trends := rules.trends.get(metric)):
            times = series.times if newest else series.times[series.times <= t]
            values = series.values[: len(times)]
            for evaluate, trend in trends:
                if (hit := evaluate(trend, times, values)) is not None:
                    found.append(hit)
        if metric == "spo2" and rules.spo2_target_asked is not None and not late:
            found.append(spo2_target_request(rules.spo2_target_asked, value, r.time))
        recorded = rules.spo2_target
        if (
            metric == "spo2"
            and recorded is not None
            and recorded.high is not None
            and r.on_oxygen is True
            and value > recorded.high
        ):
            found.append(above_target_on_oxygen(recorded, value, r.time))
        if rules.news2 is not None and metric in NEWS2_METRICS:
            hit = _news2_hit(state, rules.news2, t, rules.spo2_target_asked is None)
            if hit is not None:
                found.append(hit)
        if found:
            target = out.reviews if late else out.hits
            pid, device = state.patient_id, r.device_id  # feedback goes to this device only
            target.extend([(pid, replace(hit, device_id=device)) for hit in found])


_INSIDE = ThresholdState()


def _threshold_state(rule: ThresholdRule, series: Series | None, breached: bool) -> ThresholdState:
    """A threshold rule's state rebuilt from the stored window, as a worker that saw every
    reading has it: breached as the open alert says, the newest time seen (an older
    reading then stays out of order) and, for a sustained rule, when the current run
    beyond the limit began (walking back while beyond, with no gap longer than allowed)."""
    if series is None or len(series) == 0:
        return ThresholdState(breached=breached)
    times, values = series.times, series.values
    last = datetime.fromtimestamp(float(times[-1]), UTC)
    since = None
    if rule.sustained_s > 0:
        max_gap = rule.sustained_s if rule.max_gap_s is None else rule.max_gap_s
        i = len(times) - 1
        while i >= 0 and beyond(rule, float(values[i])):
            if i < len(times) - 1 and float(times[i + 1] - times[i]) > max_gap:
                break
            i -= 1
        if i < len(times) - 1:
            since = datetime.fromtimestamp(float(times[i + 1]), UTC)
    return ThresholdState(breached, since, last)


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
        if latest is None:
            state.news2_latest[key] = _Latest(t, item)
        elif t >= latest.t:
            if latest.value == item:  # unchanged (oxygen, consciousness): keep its points
                latest.t = t
            else:
                state.news2_latest[key] = _Latest(t, item)


class _Latest:
    """The newest value of one NEWS2 parameter, and its points once charted."""

    __slots__ = ("charted_on_oxygen", "points", "t", "value")

    def __init__(self, t: float, value: Any) -> None:
        self.t = t
        self.value = value
        self.points: int | None = None
        self.charted_on_oxygen: bool | None = None  # SpO2's points depend on it (scale 2)


_CHART: dict[str, Callable[[Any], int]] = {
    "respiratory_rate": respiratory_rate_points,
    "on_oxygen": oxygen_points,
    "systolic_bp": systolic_points,
    "heart_rate": pulse_points,
    "consciousness": lambda level: consciousness_points(Consciousness(level)),
    "body_temperature": temperature_points,
}


def spo2_target_request(config: Spo2TargetConfig, value: float, at: datetime) -> RuleHit:
    """The care plan asks a clinician for the patient's SpO2 target and NEWS2 scale."""
    return RuleHit(
        rule_id=config.id,
        kind="care_plan",
        metric="spo2",
        priority=Priority.TECHNICAL,
        value=value,
        measured_at=at,
        message="record this patient's SpO2 target range and NEWS2 SpO2 scale (homeward "
        "rules set NHS_NUMBER spo2_target low=… high=… scale=1|2 --by … --reason …); "
        "until then NEWS2 leaves SpO2 out",
        details={"asks": ["low", "high", "scale"]},
    )


def above_target_on_oxygen(config: Spo2TargetConfig, value: float, at: datetime) -> RuleHit:
    """BTS 2017: above the target range on oxygen, the oxygen may need reducing (a risk of
    carbon dioxide retention in hypercapnic respiratory failure)."""
    return RuleHit(
        rule_id=f"{config.id}:above_on_oxygen",
        kind="threshold",
        metric="spo2",
        priority=Priority.AMBER,
        value=value,
        measured_at=at,
        message=f"SpO2 {value:g} % on oxygen, above this patient's target "
        f"{config.low:g}–{config.high:g} %: review the oxygen prescription",
        direction="high",
        details={"target_low": config.low, "target_high": config.high, "on_oxygen": True},
    )


def _news2_hit(
    state: PatientState, config: News2Config, t: float, score_spo2: bool = True
) -> RuleHit | None:
    """Score the parameters fresh within the window around ``t``; each parameter is read
    off the chart once per new value, not once per evaluation. Most evaluations end in
    the low band, so the aggregate is summed first and the points kept only for a hit."""
    window = config.window_min * 60
    total, three = 0, False
    spo2: _Latest | None = None
    oxygen = None
    for key, latest in state.news2_latest.items():
        if abs(t - latest.t) > window:
            continue
        if key == "spo2":
            spo2 = latest
            continue
        if key == "on_oxygen":
            oxygen = latest.value
        charted = latest.points
        if charted is None:
            charted = latest.points = _CHART[key](latest.value)
        total += charted
        three = three or charted == 3
    if spo2 is not None and score_spo2:
        if spo2.points is None or spo2.charted_on_oxygen != oxygen:
            spo2.points = spo2_points(spo2.value, scale=config.spo2_scale, on_oxygen=oxygen)
            spo2.charted_on_oxygen = oxygen
        total += spo2.points
        three = three or spo2.points == 3
    priority = alert_priority(
        total,
        three,
        amber_at=config.amber_at,
        red_at=config.red_at,
        alert_on_single_3=config.single_parameter_3,
    )
    if priority is None:
        return None
    score = score_points(
        {
            key: latest.points
            for key, latest in state.news2_latest.items()
            if latest.points is not None
            and abs(t - latest.t) <= window
            and (score_spo2 or key != "spo2")
        }
    )
    partial = f" (partial: {', '.join(score.missing)} missing)" if score.partial else ""
    if not score_spo2:
        partial += "; SpO2 not scored until the patient's SpO2 target is recorded"
    return RuleHit(
        rule_id=config.id,
        kind="news2",
        metric=None,
        priority=Priority(priority),
        value=float(score.score),
        measured_at=datetime.fromtimestamp(t, UTC),
        direction="high",
        message=f"NEWS2 {score.score} ({score.band.value}){partial}",
        details={
            "points": dict(score.points),
            "missing": list(score.missing),
            "band": score.band.value,
            "partial": score.partial,
            "amber_at": config.amber_at,
            "red_at": config.red_at,
            "single_parameter_3": config.single_parameter_3,
            "spo2_scale": config.spo2_scale if score_spo2 else None,
        },
    )
