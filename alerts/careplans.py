"""Rule configuration: care-plan templates per condition, and per-patient overrides.

Every default names its source (clinical.md). A patient's effective rules are the union
of their conditions' templates (for a rule in two templates the more sensitive setting
wins) with the clinician's overrides applied on top. Overrides are validated as a whole
against the metric catalogue — unknown metric, a unit that is not the metric's
canonical unit, NaN, a low limit above a high limit — and refused with a clear error,
nothing partly applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic import ValidationError as PydanticValidationError

from homeward.errors import ValidationError
from homeward.metrics import CATALOGUE

PriorityName = Literal["red", "amber"]


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    id: str = Field(min_length=3, max_length=80)
    enabled: bool = True
    source: str = Field(min_length=3)


class _MetricRule(_Rule):
    metric: str
    unit: str

    @model_validator(mode="after")
    def _metric_and_unit(self) -> _MetricRule:
        spec = CATALOGUE.get(self.metric)
        if spec is None:
            raise ValueError(f"unknown metric {self.metric!r}; known: {', '.join(CATALOGUE)}")
        if self.unit != spec.unit:
            raise ValueError(
                f"{self.metric} limits are set in {spec.unit}, not {self.unit!r} "
                "(a wrong unit is refused, never converted)"
            )
        return self


class ThresholdConfig(_MetricRule):
    kind: Literal["threshold"] = "threshold"
    direction: Literal["high", "low"]
    limit: float
    priority: PriorityName
    inclusive: bool = True  # True: the limit itself is beyond (≥ for high, ≤ for low)
    hysteresis: float = Field(default=0.0, ge=0)
    sustained_min: float = Field(default=0.0, ge=0)


class ChangeConfig(_MetricRule):
    kind: Literal["change"] = "change"
    direction: Literal["rise", "fall"] = "rise"
    delta: float = Field(gt=0)
    window_h: float = Field(gt=0, le=24 * 60)
    priority: PriorityName = "amber"


class SlopeConfig(_MetricRule):
    kind: Literal["slope"] = "slope"
    direction: Literal["rise", "fall"] = "rise"
    per_day: float = Field(gt=0)
    window_days: float = Field(default=7, gt=0, le=90)
    min_points: int = Field(default=4, ge=2)
    priority: PriorityName = "amber"


class BaselineConfig(_MetricRule):
    kind: Literal["baseline"] = "baseline"
    direction: Literal["rise", "fall", "both"] = "rise"
    baseline_days: float = Field(default=28, gt=0, le=365)
    recent_days: float = Field(default=3, gt=0, le=60)
    lam: float = Field(default=0.3, gt=0, le=1)
    limit_sigma: float = Field(default=3.0, gt=0)
    min_delta: float = Field(default=0.0, ge=0)
    min_points: int = Field(default=7, ge=3)
    priority: PriorityName = "amber"


class News2Config(_Rule):
    kind: Literal["news2"] = "news2"
    spo2_scale: Literal[1, 2] = 1
    window_min: float = Field(default=15, gt=0, le=240)


class MissedConfig(_MetricRule):
    kind: Literal["missed"] = "missed"
    due: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    tz: str = "Europe/London"
    grace_min: int = Field(default=60, ge=0, le=24 * 60)


RuleConfig = Annotated[
    ThresholdConfig | ChangeConfig | SlopeConfig | BaselineConfig | News2Config | MissedConfig,
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(RuleConfig)

NICE = "NICE NG136"
NEWS2_SRC = "RCP NEWS2 2017, chart 1"


def _threshold(
    metric: str,
    name: str,
    direction: str,
    limit: float,
    priority: str,
    source: str,
    *,
    inclusive: bool = True,
    hysteresis: float = 0.0,
) -> Any:
    return _ADAPTER.validate_python(
        {
            "kind": "threshold",
            "id": f"threshold:{metric}:{name}",
            "metric": metric,
            "unit": CATALOGUE[metric].unit,
            "direction": direction,
            "limit": limit,
            "inclusive": inclusive,
            "hysteresis": hysteresis,
            "priority": priority,
            "source": source,
        }
    )


def _missed(metric: str, due: str, source: str) -> MissedConfig:
    unit = CATALOGUE[metric].unit
    return MissedConfig(id=f"missed:{metric}", metric=metric, unit=unit, due=due, source=source)


NEWS2_DEFAULT = News2Config(id="news2", source=NEWS2_SRC)
T = _threshold

TEMPLATES: dict[str, tuple[Any, ...]] = {
    "hypertension": (
        T(
            "systolic_bp",
            "severe",
            "high",
            180,
            "red",
            f"{NICE}: severe, systolic ≥ 180 mmHg",
            hysteresis=10,
        ),
        T(
            "diastolic_bp",
            "severe",
            "high",
            120,
            "red",
            f"{NICE}: severe, diastolic ≥ 120 mmHg",
            hysteresis=5,
        ),
        T(
            "systolic_bp",
            "stage2",
            "high",
            150,
            "amber",
            f"{NICE}: home stage 2 hypertension from 150/95",
            hysteresis=5,
        ),
        T(
            "systolic_bp",
            "low",
            "low",
            90,
            "red",
            f"{NEWS2_SRC}: systolic ≤ 90 scores 3",
            hysteresis=5,
        ),
        _missed("systolic_bp", "20:00", f"{NICE}: home readings twice daily"),
    ),
    "heart_failure": (
        ChangeConfig(
            id="change:body_weight:3d",
            metric="body_weight",
            unit="kg",
            delta=2.0,
            window_h=72,
            source="ESC HFA patient advice: > 2 kg in 3 days",
        ),
        ChangeConfig(
            id="change:body_weight:1d",
            metric="body_weight",
            unit="kg",
            delta=1.5,
            window_h=24,
            source="ESC HFA: > 1.5 kg in 1 day",
        ),
        SlopeConfig(
            id="slope:body_weight",
            metric="body_weight",
            unit="kg",
            per_day=0.5,
            window_days=7,
            enabled=False,
            source="optional: a steady gain of 0.5 kg a day over a week (off by default)",
        ),
        BaselineConfig(
            id="baseline:body_weight",
            metric="body_weight",
            unit="kg",
            min_delta=2.0,
            source="clinical.md: ≥ 2 kg against a 28-day baseline (EWMA λ 0.3, 3σ)",
        ),
        T("spo2", "low", "low", 91, "red", f"{NEWS2_SRC}: SpO2 ≤ 91 scores 3", hysteresis=1),
        NEWS2_DEFAULT,
        _missed("body_weight", "10:00", "ESC HFA: weigh every morning"),
    ),
    "copd": (
        T(
            "spo2",
            "low",
            "low",
            88,
            "red",
            "BTS 2017: below the 88–92% target",
            inclusive=False,
            hysteresis=1,
        ),
        BaselineConfig(
            id="baseline:spo2",
            metric="spo2",
            unit="%",
            direction="fall",
            min_delta=3.0,
            recent_days=1,
            source="BTS 2017: a fall of 3 percentage points needs reassessment",
        ),
        T(
            "body_temperature",
            "fever",
            "high",
            38.1,
            "amber",
            f"{NEWS2_SRC}: ≥ 38.1 °C scores",
            hysteresis=0.3,
        ),
        NEWS2_DEFAULT,
        _missed("spo2", "12:00", "BTS 2017 home oximetry: daily"),
    ),
    "type2_diabetes": (
        T(
            "blood_glucose",
            "severe",
            "low",
            3.0,
            "red",
            "clinical.md: < 3.0 mmol/L is clinically significant",
            inclusive=False,
            hysteresis=0.5,
        ),
        T(
            "blood_glucose",
            "hypo",
            "low",
            4.0,
            "amber",
            "Four is the floor: < 4.0 mmol/L",
            inclusive=False,
            hysteresis=0.5,
        ),
        T(
            "blood_glucose",
            "high",
            "high",
            13.9,
            "amber",
            "Battelino 2019: > 13.9 mmol/L",
            inclusive=False,
            hysteresis=1.0,
        ),
        _missed("blood_glucose", "10:00", "care plan: daily fasting glucose"),
    ),
    "post_discharge": (
        NEWS2_DEFAULT,
        T("spo2", "low", "low", 91, "red", f"{NEWS2_SRC}: SpO2 ≤ 91 scores 3", hysteresis=1),
        T(
            "heart_rate",
            "high",
            "high",
            131,
            "red",
            f"{NEWS2_SRC}: pulse ≥ 131 scores 3",
            hysteresis=5,
        ),
        T(
            "body_temperature",
            "fever",
            "high",
            39.1,
            "amber",
            f"{NEWS2_SRC}: ≥ 39.1 °C scores 2",
            hysteresis=0.3,
        ),
    ),
}


def _more_sensitive(a: Any, b: Any) -> Any:
    if isinstance(a, ThresholdConfig) and isinstance(b, ThresholdConfig):
        if a.direction == "high":
            return a if a.limit <= b.limit else b
        return a if a.limit >= b.limit else b
    if isinstance(a, ChangeConfig) and isinstance(b, ChangeConfig):
        return a if a.delta <= b.delta else b
    return a


@dataclass(frozen=True, slots=True)
class EffectiveRule:
    rule: Any  # one of the *Config models
    origin: str  # "template:<condition>" or "override"
    overridden: tuple[str, ...] = ()


def template_rules(conditions: Iterable[str]) -> dict[str, EffectiveRule]:
    rules: dict[str, EffectiveRule] = {}
    for condition in sorted(conditions):
        for rule in TEMPLATES.get(condition, ()):
            current = rules.get(rule.id)
            if current is None or _more_sensitive(rule, current.rule) is rule:
                rules[rule.id] = EffectiveRule(rule, f"template:{condition}")
    return rules


def effective_rules(
    conditions: Iterable[str], overrides: Mapping[str, Mapping[str, Any]]
) -> dict[str, EffectiveRule]:
    """Templates with overrides applied; raises ValidationError and applies nothing on error."""
    rules = template_rules(conditions)
    errors: list[str] = []
    for rule_id, changes in overrides.items():
        base = rules.get(rule_id)
        if base is None:
            errors.append(f"{rule_id}: no such rule for this patient's care plan")
            continue
        if {"id", "kind", "metric"} & set(changes):
            errors.append(f"{rule_id}: id, kind and metric cannot be changed")
            continue
        try:
            merged = _ADAPTER.validate_python({**base.rule.model_dump(), **changes})
        except PydanticValidationError as exc:
            errors.extend(f"{rule_id}: {_describe(e)}" for e in exc.errors(include_url=False))
            continue
        rules[rule_id] = EffectiveRule(merged, "override", tuple(sorted(changes)))
    errors.extend(_cross_checks(rules))
    if errors:
        raise ValidationError("; ".join(errors))
    return rules


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "value"
    return f"{where}: {error['msg']}"


def _cross_checks(rules: Mapping[str, EffectiveRule]) -> list[str]:
    """A low limit must sit below every high limit on the same metric."""
    problems = []
    thresholds = [
        r.rule for r in rules.values() if isinstance(r.rule, ThresholdConfig) and r.rule.enabled
    ]
    for low in (t for t in thresholds if t.direction == "low"):
        for high in (t for t in thresholds if t.direction == "high" and t.metric == low.metric):
            if low.limit >= high.limit:
                problems.append(
                    f"{low.id} limit {low.limit:g} is not below {high.id} limit {high.limit:g}"
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
