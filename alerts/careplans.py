"""Rule configuration: validated models, care-plan templates per condition, and per-patient
overrides applied all-or-nothing with the provenance of every value.

* Every template default names its published source (``source``; docs/references.md and
  docs/rules.md). Clinicians change them per patient; the code never holds a patient's
  thresholds.
* **Several conditions** (e.g. heart failure + diabetes): the union of their templates'
  rules. For a rule id in more than one template the more sensitive configuration wins
  *as a whole* (see :func:`sensitivity`): an enabled rule over a disabled one, then the
  limit nearer to normal — the lower high limit, the higher low limit, the smaller change
  or slope, the earlier deadline; on a tie, the condition first in alphabetical order.
* **Overrides** ``{rule_id: {field: value}}`` change fields of the patient's rules; an
  unknown rule id whose changes include ``kind`` adds a patient-specific rule. Everything
  is validated first — unknown metric, a unit other than the metric's canonical unit
  (refused, never converted), NaN or infinity, negative durations, a low limit at or
  above a high one, an amber limit beyond a red one — and one
  :class:`~homeward.errors.ValidationError` names every problem; nothing is applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic import ValidationError as PydanticValidationError

from alerts.rules.missed import Schedule
from alerts.rules.threshold import ThresholdRule
from alerts.rules.trend import BaselineRule, ChangeRule, CusumRule, SlopeRule
from alerts.rules.types import Priority
from homeward.errors import ValidationError
from homeward.metrics import CATALOGUE

PriorityName = Literal["red", "amber"]
HISTORY_DAYS = 35  # the engine keeps 35 days per metric: no window may reach further back


class _RuleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    id: str = Field(min_length=3, max_length=80, pattern=r"^[a-z0-9_]+(:[a-z0-9_.-]+)*$")
    enabled: bool = True
    source: str = Field(default="patient-specific rule set by a clinician", min_length=3)


def _known_metric(metric: str) -> None:
    if metric not in CATALOGUE:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(CATALOGUE)}")


class _MetricRuleConfig(_RuleConfig):
    metric: str
    unit: str  # stated explicitly: it must be the metric's canonical unit

    @model_validator(mode="after")
    def _metric_and_unit(self) -> _MetricRuleConfig:
        _known_metric(self.metric)
        canonical = CATALOGUE[self.metric].unit
        if self.unit != canonical:
            raise ValueError(
                f"{self.metric} limits are set in {canonical}, not {self.unit!r} "
                "(a wrong unit is refused, never converted)"
            )
        return self


class ThresholdRuleConfig(_MetricRuleConfig):
    kind: Literal["threshold"] = "threshold"
    direction: Literal["high", "low"]
    limit: float
    priority: PriorityName
    inclusive: bool = True  # True: the limit itself is beyond (≥ for high, ≤ for low)
    hysteresis: float = Field(default=0.0, ge=0)
    sustained_min: float = Field(default=0.0, ge=0, le=24 * 60)

    @model_validator(mode="after")
    def _within_what_is_possible(self) -> ThresholdRuleConfig:
        low, high = CATALOGUE[self.metric].possible
        clears_at = self.limit - self.hysteresis if self.direction == "high" else self.limit
        top = self.limit if self.direction == "high" else self.limit + self.hysteresis
        if not (low <= clears_at and top <= high):
            raise ValueError(
                f"limit {self.limit:g} with hysteresis {self.hysteresis:g} reaches outside "
                f"what {self.metric} can be ({low:g}–{high:g} {self.unit})"
            )
        return self

    def to_rule(self) -> ThresholdRule:
        return ThresholdRule(
            self.id,
            self.metric,
            self.direction,
            self.limit,
            Priority(self.priority),
            self.hysteresis,
            self.sustained_min * 60.0,
            inclusive=self.inclusive,
        )


class ChangeRuleConfig(_MetricRuleConfig):
    kind: Literal["change"] = "change"
    direction: Literal["rise", "fall"] = "rise"
    delta: float = Field(gt=0)
    window_h: float = Field(gt=0, le=24 * HISTORY_DAYS)
    priority: PriorityName = "amber"

    def to_rule(self) -> ChangeRule:
        p = Priority(self.priority)
        return ChangeRule(self.id, self.metric, self.delta, self.window_h, self.direction, p)


class SlopeRuleConfig(_MetricRuleConfig):
    kind: Literal["slope"] = "slope"
    direction: Literal["rise", "fall"] = "rise"
    per_day: float = Field(gt=0)
    window_days: float = Field(default=7.0, gt=0, le=HISTORY_DAYS)
    min_points: int = Field(default=4, ge=3)
    priority: PriorityName = "amber"

    def to_rule(self) -> SlopeRule:
        return SlopeRule(
            self.id,
            self.metric,
            self.per_day,
            self.window_days,
            self.min_points,
            self.direction,
            Priority(self.priority),
        )


_EWMA_ONLY = ("lam", "limit_sigma", "min_delta")
_CUSUM_ONLY = ("k_sigma", "h_sigma")


class BaselineRuleConfig(_MetricRuleConfig):
    """Deviation from the patient's own baseline: EWMA (``lam``, ``limit_sigma``,
    ``min_delta``) or CUSUM (``k_sigma``, ``h_sigma``); ``recent_days`` is kept out of
    the baseline (EWMA: the recent window; CUSUM: the guard)."""

    kind: Literal["baseline"] = "baseline"
    method: Literal["ewma", "cusum"] = "ewma"
    direction: Literal["rise", "fall", "both"] = "rise"
    baseline_days: float = Field(default=28.0, gt=0)
    recent_days: float = Field(default=3.0, gt=0)
    min_points: int = Field(default=14, ge=3)
    lam: float = Field(default=0.3, gt=0, le=1)
    limit_sigma: float = Field(default=3.0, gt=0)
    min_delta: float = Field(default=0.0, ge=0)
    k_sigma: float = Field(default=0.5, ge=0)
    h_sigma: float = Field(default=5.0, gt=0)
    min_sigma: float = Field(default=0.0, ge=0)
    priority: PriorityName = "amber"

    @model_validator(mode="after")
    def _fits_history(self) -> BaselineRuleConfig:
        if self.baseline_days + self.recent_days > HISTORY_DAYS:
            raise ValueError(
                f"baseline_days + recent_days must be at most {HISTORY_DAYS} "
                "(the history the engine keeps)"
            )
        return self

    @model_validator(mode="after")
    def _settings_of_its_method(self) -> BaselineRuleConfig:
        """A setting the chosen method does not use is refused, never saved without effect:
        CUSUM has no λ, L or minimum change; EWMA has no k or h."""
        unused = _EWMA_ONLY if self.method == "cusum" else _CUSUM_ONLY
        fields = type(self).model_fields
        wrong = [name for name in unused if getattr(self, name) != fields[name].default]
        if wrong:
            other = "ewma" if self.method == "cusum" else "cusum"
            raise ValueError(
                f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} {other} settings; "
                f"with method={self.method} give "
                + ", ".join(f"{name}={fields[name].default:g}" for name in wrong)
                + " (or method="
                + other
                + ")"
            )
        return self

    def to_rule(self) -> BaselineRule | CusumRule:
        p = Priority(self.priority)
        if self.method == "cusum":
            return CusumRule(
                self.id,
                self.metric,
                self.baseline_days,
                self.recent_days,
                self.k_sigma,
                self.h_sigma,
                self.min_points,
                self.direction,
                p,
                self.min_sigma,
            )
        return BaselineRule(
            self.id,
            self.metric,
            self.baseline_days,
            self.recent_days,
            self.lam,
            self.limit_sigma,
            self.min_delta,
            self.min_points,
            self.direction,
            p,
            self.min_sigma,
        )


class News2RuleConfig(_RuleConfig):
    """NEWS2 (alerts/news2.py, docs/news2.md): which scale, how close in time the
    parameters of one vital set must be, and the aggregate that alerts at each priority."""

    kind: Literal["news2"] = "news2"
    spo2_scale: Literal[1, 2] = 1  # 2 only for documented hypercapnic respiratory failure
    window_min: float = Field(default=15.0, gt=0, le=240)
    amber_at: int = Field(default=5, ge=1, le=20)  # medium: urgent review
    red_at: int = Field(default=7, ge=1, le=20)  # high: emergency assessment
    single_parameter_3: bool = True  # a 3 in one parameter alerts amber

    @model_validator(mode="after")
    def _ordered(self) -> News2RuleConfig:
        if self.amber_at >= self.red_at:
            raise ValueError(f"amber_at {self.amber_at} must be below red_at {self.red_at}")
        return self


class MissedReadingConfig(_RuleConfig):
    kind: Literal["missed"] = "missed"
    metric: str
    due: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # local "HH:MM"
    tz: str = Field(default="Europe/London", max_length=64)
    grace_min: int = Field(default=60, ge=0, le=24 * 60)

    @model_validator(mode="after")
    def _metric_and_zone(self) -> MissedReadingConfig:
        _known_metric(self.metric)
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {self.tz!r} (e.g. Europe/London)") from None
        return self

    def to_rule(self) -> Schedule:
        hour, minute = (int(x) for x in self.due.split(":"))
        return Schedule(self.id, self.metric, time(hour, minute), self.tz, self.grace_min)


class DeviceSilenceConfig(_RuleConfig):
    """Technical alert for a device that reports itself offline or is silent for longer
    than ``factor`` × its expected cadence."""

    kind: Literal["device_silence"] = "device_silence"
    spot_cadence_h: float = Field(default=24.0, gt=0, le=24 * 7)  # cuffs, scales, meters
    continuous_cadence_min: float = Field(default=2.0, gt=0, le=24 * 60)  # wearables
    factor: float = Field(default=2.0, ge=1, le=10)
    offline_alerts: bool = True


class Spo2TargetConfig(_RuleConfig):
    """The patient's SpO2 target range and NEWS2 SpO2 scale: a clinician's decision for this
    patient (BTS 2017: 88–92 % with a risk of hypercapnic respiratory failure, 94–98 %
    otherwise; RCP NEWS2 2017: scale 2 only for a prescribed 88–92 % target in confirmed
    hypercapnic respiratory failure). Who decided and why is the change's ``--by`` and
    ``--reason`` (the rule history). Not yet recorded (``low``/``high`` unset), NEWS2 leaves
    SpO2 out (partial) and each SpO2 reading asks for the decision (a technical alert)
    instead of scoring a reading inside the patient's own target as 3."""

    kind: Literal["spo2_target"] = "spo2_target"
    low: float | None = Field(default=None, ge=70, le=100)
    high: float | None = Field(default=None, ge=70, le=100)
    scale: Literal[1, 2] = 1

    @property
    def recorded(self) -> bool:
        return self.low is not None and self.high is not None

    @model_validator(mode="after")
    def _a_whole_decision(self) -> Spo2TargetConfig:
        if not self.enabled:
            raise ValueError(
                "the SpO2 target cannot be turned off: record it (low=… high=… scale=1|2)"
            )
        if (self.low is None) != (self.high is None):
            raise ValueError("give both low and high of the SpO2 target range")
        if self.low is not None and self.high is not None:
            if self.low >= self.high:
                raise ValueError(f"target low {self.low:g} must be below high {self.high:g}")
            if self.scale == 2 and self.high > 92:
                raise ValueError(
                    "NEWS2 SpO2 scale 2 is for a prescribed target of 88–92 % (RCP NEWS2 "
                    f"2017), not up to {self.high:g} %"
                )
        elif self.scale != 1:
            raise ValueError("record the target range (low, high) with scale 2")
        return self


class QualityConfig(_RuleConfig):
    """Questionable readings (alerts/quality.py): never a clinical alarm alone; the device is
    asked for a retake, and a technical alert is raised when no good reading of that metric
    arrives within ``retake_within_min``. It cannot be turned off."""

    kind: Literal["quality"] = "quality"
    retake_within_min: float = Field(default=30.0, gt=0, le=24 * 60)

    @model_validator(mode="after")
    def _always_on(self) -> QualityConfig:
        if not self.enabled:
            raise ValueError(
                "questionable readings are always held for a retake (never alerted on, "
                "never dropped): set retake_within_min instead of enabled=false"
            )
        return self


RuleConfig = (
    ThresholdRuleConfig
    | ChangeRuleConfig
    | SlopeRuleConfig
    | BaselineRuleConfig
    | News2RuleConfig
    | MissedReadingConfig
    | DeviceSilenceConfig
    | QualityConfig
    | Spo2TargetConfig
)
_ADAPTER: TypeAdapter[RuleConfig] = TypeAdapter(Annotated[RuleConfig, Field(discriminator="kind")])

# Names used before the models were renamed (alerts.engine, alerts.adherence).
ThresholdConfig = ThresholdRuleConfig
ChangeConfig = ChangeRuleConfig
SlopeConfig = SlopeRuleConfig
BaselineConfig = BaselineRuleConfig
News2Config = News2RuleConfig
MissedConfig = MissedReadingConfig

# --- templates -------------------------------------------------------------------------

NG136 = "NICE NG136"
NEWS2 = "RCP NEWS2 2017 chart 1"
ESC = "ESC HFA patient advice"
BTS = "BTS 2017 oxygen guideline"
_SIGNS = {"≥": ("high", True), ">": ("high", False), "≤": ("low", True), "<": ("low", False)}


def _limit(
    metric: str, name: str, sign: str, limit: float, priority: str, hysteresis: float, source: str
) -> ThresholdRuleConfig:
    direction, inclusive = _SIGNS[sign]
    return ThresholdRuleConfig.model_validate(
        {
            "id": f"threshold:{metric}:{name}",
            "metric": metric,
            "unit": CATALOGUE[metric].unit,
            "direction": direction,
            "inclusive": inclusive,
            "limit": limit,
            "priority": priority,
            "hysteresis": hysteresis,
            "source": source,
        }
    )


def _missed(metric: str, due: str, source: str) -> MissedReadingConfig:
    return MissedReadingConfig(id=f"missed:{metric}", metric=metric, due=due, source=source)


def _weight(**settings: Any) -> Any:
    return {"metric": "body_weight", "unit": "kg", **settings}


NEWS2_DEFAULT = News2RuleConfig(
    id="news2", source=f"{NEWS2}: 5–6 medium (amber), 7+ high (red), a single 3 (amber)"
)
SILENCE_DEFAULT = DeviceSilenceConfig(
    id="device_silence",
    source="IEC 60601-1-8: device silence is a technical alarm; cadences and factor are "
    "Homeward defaults † (a daily spot reading, a wearable every 2 minutes, twice that)",
)
SPO2_TARGET_ASKED = Spo2TargetConfig(
    id="spo2_target",
    source=f"{BTS}: 88–92 % with a risk of hypercapnic failure, else 94–98 %; {NEWS2}: "
    "scale 2 only by a clinician's decision for the patient — to be recorded",
)
QUALITY_DEFAULT = QualityConfig(
    id="quality",
    source="Homeward default †: a retake within 30 minutes (NICE NG136 home readings are "
    "taken as a pair a minute apart; IEC 60601-1-8: a measurement problem is a technical alarm)",
)
CARE_PLAN = "care-plan default, agree the time with the patient"

TEMPLATES: dict[str, tuple[RuleConfig, ...]] = {
    "hypertension": (
        _limit("systolic_bp", "severe", "≥", 180, "red", 10, f"{NG136}: severe, systolic ≥ 180"),
        _limit("diastolic_bp", "severe", "≥", 120, "red", 5, f"{NG136}: severe, diastolic ≥ 120"),
        _limit("systolic_bp", "stage2", "≥", 150, "amber", 5, f"{NG136}: home stage 2 from 150/95"),
        _limit("diastolic_bp", "stage2", "≥", 95, "amber", 5, f"{NG136}: home stage 2 from 150/95"),
        _limit("systolic_bp", "low", "≤", 90, "red", 5, f"{NEWS2}: systolic ≤ 90 scores 3"),
        _missed("systolic_bp", "20:00", f"{NG136}: home readings twice a day; {CARE_PLAN}"),
        SILENCE_DEFAULT,
        QUALITY_DEFAULT,
    ),
    "heart_failure": (
        ChangeRuleConfig(
            **_weight(id="change:body_weight:3d", delta=2.0, window_h=72),
            source=f"{ESC}: > 2 kg in 3 days",
        ),
        ChangeRuleConfig(
            **_weight(id="change:body_weight:1d", delta=1.5, window_h=24),
            source="Homeward default †, no published source: > 1.5 kg in 1 day — confirm locally",
        ),
        BaselineRuleConfig(
            **_weight(id="baseline:body_weight", min_delta=2.0),
            source="Zhang 2009, Gyllensten 2016: ≥ 2 kg against a 28-day baseline; Montgomery "
            "(statistical quality control): EWMA λ 0.3, limits 3σ",
        ),
        BaselineRuleConfig(
            **_weight(id="baseline:body_weight:cusum", method="cusum", enabled=False),
            source="Montgomery (statistical quality control): CUSUM k 0.5σ, h 5σ, reset after "
            "an alarm (off by default)",
        ),
        SlopeRuleConfig(
            **_weight(id="slope:body_weight", per_day=0.5, window_days=7, enabled=False),
            source="Homeward option, no published limit: 0.5 kg a day over 7 days (off)",
        ),
        _limit("spo2", "low", "≤", 91, "red", 1, f"{NEWS2}: SpO2 ≤ 91 % scores 3 (scale 1)"),
        NEWS2_DEFAULT,
        _missed("body_weight", "10:00", f"{ESC}: weigh every morning; {CARE_PLAN}"),
        SILENCE_DEFAULT,
        QUALITY_DEFAULT,
    ),
    "copd": (
        _limit("spo2", "low", "<", 88, "red", 1, f"{BTS}: target 88–92 % for hypercapnic risk"),
        BaselineRuleConfig(
            id="baseline:spo2",
            metric="spo2",
            unit="%",
            direction="fall",
            min_delta=3.0,
            recent_days=1,
            source=f"{BTS}: a fall of 3 percentage points or more needs reassessment",
        ),
        _limit("body_temperature", "fever", "≥", 38.1, "amber", 0.3, f"{NEWS2}: ≥ 38.1 °C scores"),
        NEWS2_DEFAULT,
        _missed("spo2", "12:00", f"{BTS}: home oximetry; {CARE_PLAN}"),
        SPO2_TARGET_ASKED,
        SILENCE_DEFAULT,
        QUALITY_DEFAULT,
    ),
    "type2_diabetes": (
        _limit("blood_glucose", "severe", "<", 3.0, "red", 0.5, "IHSG level 2: < 3.0 significant"),
        _limit("blood_glucose", "hypo", "<", 4.0, "amber", 0.5, "Hypo: four is the floor (< 4.0)"),
        _limit("blood_glucose", "high", ">", 13.9, "amber", 1.0, "Battelino 2019: > 13.9 mmol/L"),
        _missed("blood_glucose", "10:00", f"daily glucose; {CARE_PLAN}"),
        SILENCE_DEFAULT,
        QUALITY_DEFAULT,
    ),
    "post_discharge": (
        NEWS2_DEFAULT,
        _limit("spo2", "low", "≤", 91, "red", 1, f"{NEWS2}: SpO2 ≤ 91 % scores 3 (scale 1)"),
        _limit("heart_rate", "high", "≥", 131, "red", 5, f"{NEWS2}: pulse ≥ 131 scores 3"),
        _limit("heart_rate", "low", "≤", 40, "red", 3, f"{NEWS2}: pulse ≤ 40 scores 3"),
        _limit("systolic_bp", "low", "≤", 90, "red", 5, f"{NEWS2}: systolic ≤ 90 scores 3"),
        _limit(
            "body_temperature", "fever", "≥", 39.1, "amber", 0.3, f"{NEWS2}: ≥ 39.1 °C scores 2"
        ),
        _limit("body_temperature", "low", "≤", 35.0, "red", 0.3, f"{NEWS2}: ≤ 35.0 °C scores 3"),
        SILENCE_DEFAULT,
        QUALITY_DEFAULT,
    ),
}


# --- a patient's rule set ---------------------------------------------------------------


def sensitivity(rule: RuleConfig) -> tuple[float, ...]:
    """Larger is more sensitive (alerts sooner); compared only between configurations of
    the same rule id, which templates keep to one kind, metric and direction."""
    on = float(rule.enabled)
    match rule:
        case ThresholdRuleConfig():
            nearer = -rule.limit if rule.direction == "high" else rule.limit
            red = float(rule.priority == "red")
            return (on, nearer, float(rule.inclusive), red, -rule.sustained_min)
        case ChangeRuleConfig():
            return (on, -rule.delta, rule.window_h)
        case SlopeRuleConfig():
            return (on, -rule.per_day, rule.window_days, -rule.min_points)
        case BaselineRuleConfig():
            return (on, -rule.min_delta, -rule.limit_sigma, -rule.h_sigma, -rule.min_points)
        case News2RuleConfig():
            return (on, -rule.amber_at, -rule.red_at, float(rule.single_parameter_3))
        case MissedReadingConfig():
            hour, minute = (int(x) for x in rule.due.split(":"))
            return (on, -(hour * 60 + minute + rule.grace_min))
        case DeviceSilenceConfig():
            return (on, -rule.factor, -rule.spot_cadence_h, -rule.continuous_cadence_min)
        case QualityConfig():
            return (on, -rule.retake_within_min)
        case Spo2TargetConfig():
            return (on, float(rule.recorded))


@dataclass(frozen=True, slots=True)
class EffectiveRule:
    rule: Any  # a RuleConfig model (typed loosely for callers that narrow it themselves)
    origin: str  # "template:<condition>", or "override" when any field was overridden
    overridden: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PatientRuleSet:
    """A patient's effective rules, and where each value of each rule came from:
    ``provenance[rule_id][field]`` is ``"template:<condition>"`` or ``"override"``."""

    rules: Mapping[str, RuleConfig]
    provenance: Mapping[str, Mapping[str, str]]
    conditions: tuple[str, ...] = ()

    def overridden(self, rule_id: str) -> tuple[str, ...]:
        return tuple(sorted(k for k, v in self.provenance[rule_id].items() if v == "override"))

    def origin(self, rule_id: str) -> str:
        origins = set(self.provenance[rule_id].values())
        return "override" if "override" in origins else min(origins)

    def enabled(self) -> list[RuleConfig]:
        return [rule for rule in self.rules.values() if rule.enabled]

    def effective(self) -> dict[str, EffectiveRule]:
        return {
            rule_id: EffectiveRule(rule, self.origin(rule_id), self.overridden(rule_id))
            for rule_id, rule in self.rules.items()
        }


def template_ruleset(conditions: Iterable[str]) -> PatientRuleSet:
    """The union of the conditions' templates, the more sensitive configuration winning."""
    names = sorted(set(conditions))
    unknown = [name for name in names if name not in TEMPLATES]
    if unknown:
        raise ValidationError(
            f"unknown condition {', '.join(unknown)}; known: {', '.join(sorted(TEMPLATES))}"
        )
    chosen: dict[str, tuple[RuleConfig, str]] = {}
    for name in names:
        for rule in TEMPLATES[name]:
            current = chosen.get(rule.id)
            if current is not None and _shape(current[0]) != _shape(rule):
                raise ValidationError(f"templates disagree on what {rule.id} is")
            if current is None or sensitivity(rule) > sensitivity(current[0]):
                chosen[rule.id] = (rule, f"template:{name}")
    return PatientRuleSet(
        {rule_id: rule for rule_id, (rule, _) in chosen.items()},
        {rule_id: dict.fromkeys(type(r).model_fields, o) for rule_id, (r, o) in chosen.items()},
        tuple(names),
    )


_FIXED = ("id", "kind", "metric", "source")


def apply_overrides(
    template: PatientRuleSet, overrides: Mapping[str, Mapping[str, Any]]
) -> PatientRuleSet:
    """``template`` with ``overrides`` applied — all of them, or none: every problem is
    collected and raised as one :class:`ValidationError`, and nothing is returned."""
    if not isinstance(overrides, Mapping):
        raise ValidationError("overrides must map rule ids to {field: value}")
    rules = dict(template.rules)
    provenance = {rule_id: dict(fields) for rule_id, fields in template.provenance.items()}
    errors: list[str] = []
    for rule_id, changes in overrides.items():
        if not isinstance(changes, Mapping) or not changes:
            errors.append(f"{rule_id}: give the changes as field=value pairs")
            continue
        base = rules.get(rule_id)
        if base is None and "kind" not in changes:
            errors.append(f"{rule_id}: no such rule for this patient's care plan")
            continue
        fixed = [name for name in _FIXED if name in changes and base is not None]
        if fixed or changes.get("id", rule_id) != rule_id:
            errors.append(f"{rule_id}: {', '.join(fixed) or 'id'} cannot be changed")
            continue
        data = {"id": rule_id, **changes} if base is None else {**base.model_dump(), **changes}
        try:
            rule = _ADAPTER.validate_python(data)
        except PydanticValidationError as exc:
            errors.extend(_describe(rule_id, e) for e in exc.errors(include_url=False))
            continue
        rules[rule_id] = rule
        fields = type(rule).model_fields if base is None else changes
        provenance[rule_id] = {**provenance.get(rule_id, {}), **dict.fromkeys(fields, "override")}
    errors.extend(_apply_spo2_target(rules, provenance, overrides))
    errors.extend(_cross_checks(rules))
    if errors:
        raise ValidationError("rule change refused, nothing applied: " + "; ".join(errors))
    return PatientRuleSet(rules, provenance, template.conditions)


def effective_rules(
    conditions: Iterable[str], overrides: Mapping[str, Mapping[str, Any]]
) -> dict[str, EffectiveRule]:
    """Templates with overrides applied; raises ValidationError and applies nothing on error."""
    return apply_overrides(template_ruleset(conditions), overrides).effective()


def _shape(rule: RuleConfig) -> tuple[str, ...]:
    return (rule.kind, getattr(rule, "metric", ""), getattr(rule, "direction", ""))


def _describe(rule_id: str, error: Any) -> str:
    loc = [str(p) for p in error["loc"]]
    if loc and loc[0] in _KINDS:
        loc = loc[1:]  # the discriminator's tag
    message = str(error["msg"]).removeprefix("Value error, ")
    if not loc:
        return f"{rule_id}: {message}"
    if error["type"] == "missing":
        return f"{rule_id}: {'.'.join(loc)} is required"
    return f"{rule_id}: {'.'.join(loc)}: {message} (got {error.get('input')!r})"


_KINDS = (
    "threshold",
    "change",
    "slope",
    "baseline",
    "news2",
    "missed",
    "device_silence",
    "quality",
    "spo2_target",
)


SPO2_LOW = "threshold:spo2:low"


def _apply_spo2_target(
    rules: dict[str, RuleConfig],
    provenance: dict[str, dict[str, str]],
    overrides: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """A recorded SpO2 target sets NEWS2's scale and, unless a clinician set that rule's
    limit themselves, ``threshold:spo2:low`` to "below the target's low end". NEWS2's
    ``spo2_scale`` is never set directly: it is recorded with the target."""
    problems = []
    news2_changes = overrides.get("news2")
    if isinstance(news2_changes, Mapping) and "spo2_scale" in news2_changes:
        problems.append(
            "news2: spo2_scale is recorded with the patient's SpO2 target, by a clinician: "
            "rules set NHS_NUMBER spo2_target low=88 high=92 scale=2 --by … --reason …"
        )
    target = rules.get("spo2_target")
    if not isinstance(target, Spo2TargetConfig) or not target.recorded or target.low is None:
        return problems
    news2 = rules.get("news2")
    if isinstance(news2, News2RuleConfig):
        rules["news2"] = news2.model_copy(update={"spo2_scale": target.scale})
        provenance["news2"] = {**provenance.get("news2", {}), "spo2_scale": "spo2_target"}
    limit = rules.get(SPO2_LOW)
    if isinstance(limit, ThresholdRuleConfig) and limit.direction == "low":
        own = overrides.get(SPO2_LOW)
        set_by_hand = isinstance(own, Mapping) and bool({"limit", "inclusive"} & set(own))
        if not set_by_hand:
            rules[SPO2_LOW] = limit.model_copy(update={"limit": target.low, "inclusive": False})
            fields = {"limit": "spo2_target", "inclusive": "spo2_target"}
            provenance[SPO2_LOW] = {**provenance.get(SPO2_LOW, {}), **fields}
        elif limit.enabled and (
            limit.limit > target.low or (limit.limit == target.low and limit.inclusive)
        ):
            problems.append(
                f"{SPO2_LOW} limit {limit.limit:g} alarms inside the patient's recorded "
                f"SpO2 target {target.low:g}–{target.high:g} %"
            )
    return problems


def _cross_checks(rules: Mapping[str, RuleConfig]) -> list[str]:
    """Across enabled thresholds of one metric: every low limit below every high limit,
    and no amber limit beyond a red one in the same direction."""
    problems = []
    limits = [r for r in rules.values() if isinstance(r, ThresholdRuleConfig) and r.enabled]
    for a in limits:
        for b in limits:
            if a.metric != b.metric:
                continue
            if a.direction == "low" and b.direction == "high" and a.limit >= b.limit:
                problems.append(f"{a.id} limit {a.limit:g} is not below {b.id} limit {b.limit:g}")
            if a.direction == b.direction and a.priority == "amber" and b.priority == "red":
                worse = a.limit > b.limit if a.direction == "high" else a.limit < b.limit
                if worse:
                    problems.append(
                        f"{a.id} (amber, {a.limit:g}) is beyond {b.id} (red, {b.limit:g}): "
                        "an amber limit must be less extreme than a red one"
                    )
    return problems


def coerce_override_value(text: str) -> Any:
    """``field=value`` from the command line: numbers, booleans, or text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text else number
