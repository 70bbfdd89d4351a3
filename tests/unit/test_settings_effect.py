"""Every setting a clinician can save changes a decision — or is refused (issue 14, item 3;
hazard H10 "settings without effect").

For every field of every rule kind (the tables of docs/rules.md are the models of
alerts/careplans.py) there is a case: the patient's rules with and without one changed
value decide differently on some input, through the same rule engine and adherence
functions the service runs — or the change is refused by validation, nothing applied.
``test_every_field_of_every_kind_has_a_case`` fails when a field is added without one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest

from alerts.adherence import (
    missed_candidates,
    retake_candidates,
    retake_within_for,
    schedules_for,
    silence_candidates,
    silences_for,
)
from alerts.careplans import RuleConfig, apply_overrides, template_ruleset
from alerts.engine import ManualObservation, PatientSnapshot, RuleEngine
from homeward.errors import ValidationError

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
Verdict = tuple[str, ...]


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@dataclass(frozen=True)
class Vitals:
    """Readings for the engine: (hours after T0, metric, value[, on oxygen]), each its own
    batch."""

    readings: Sequence[tuple[float, str, float] | tuple[float, str, float, bool]]

    def decide(self, conditions: Sequence[str], overrides: Mapping[str, Any]) -> set[Verdict]:
        engine = RuleEngine()
        engine.load(PatientSnapshot(1, 1, tuple(conditions), overrides, [], frozenset()))
        out: set[Verdict] = set()
        for hours, metric, value, *oxygen in self.readings:
            reading = ManualObservation(
                1, metric, _at(hours), value, on_oxygen=oxygen[0] if oxygen else None
            )
            decisions = engine.evaluate([reading])
            at = f"{hours:g}h"
            out |= {("hit", h.rule_id, h.priority.value, at) for _, h in decisions.hits}
            out |= {("clear", c.rule_id, at) for _, c in decisions.clears}
            out |= {("review", h.rule_id, at) for _, h in decisions.reviews}
        return out


@dataclass(frozen=True)
class Adherence:
    """The adherence pass's decisions at ``now``: missed readings and silent devices."""

    now: datetime
    last: Mapping[str, datetime] = field(default_factory=dict)  # metric → last reading
    devices: Sequence[tuple[str, str | None, str | None, datetime | None]] = ()
    # questionable readings still waiting for a good retake: (metric, measured, device, flags)
    pending: Sequence[tuple[str, datetime, str, tuple[str, ...]]] = ()

    def decide(self, conditions: Sequence[str], overrides: Mapping[str, Any]) -> set[Verdict]:
        schedules = {1: schedules_for(list(conditions), overrides)}
        last = {(1, metric): at for metric, at in self.last.items()}
        found = missed_candidates(schedules, last, self.now)
        silences = {1: silences_for(list(conditions), overrides)}
        rows = [(device, kind, status, seen, 1) for device, kind, status, seen in self.devices]
        found += silence_candidates(rows, self.now, silences)
        within = {1: retake_within_for(list(conditions), overrides)}
        waiting = [(1, metric, at, device, flags) for metric, at, device, flags in self.pending]
        found += retake_candidates(waiting, self.now, within)
        return {("alert", c.rule_id, c.at.isoformat()) for c in found}


Input = Vitals | Adherence


@dataclass(frozen=True)
class Effect:
    """``changes`` to ``rule`` (on top of ``base``) change the decision on ``given``."""

    kind: str
    fld: str
    conditions: tuple[str, ...]
    rule: str
    changes: Mapping[str, Any]
    given: Input
    base: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Refused:
    """``changes`` to ``rule`` are refused by validation, naming ``message``."""

    kind: str
    fld: str
    conditions: tuple[str, ...]
    rule: str
    changes: Mapping[str, Any]
    message: str
    base: Mapping[str, Any] = field(default_factory=dict)


# --- inputs ------------------------------------------------------------------------------

BP = "systolic_bp"
SEVERE = "threshold:systolic_bp:severe"
HT = ("hypertension",)
HF = ("heart_failure",)
PD = ("post_discharge",)
# systolic 180 exactly, then 186 held five minutes, then 172 (hysteresis band of 10)
BP_RUN = Vitals([(0, BP, 180.0), (1, BP, 186.0), (1 + 5 / 60, BP, 186.0), (2, BP, 172.0)])
BP_EDGE = Vitals([(0, BP, 176.0)])
HR_MINE = "threshold:heart_rate:mine"
HR_RULE = {
    "kind": "threshold",
    "metric": "heart_rate",
    "unit": "/min",
    "direction": "high",
    "limit": 120,
    "priority": "amber",
}
HR_RUN = Vitals([(0, "heart_rate", 125.0), (1, "heart_rate", 45.0)])

W = "body_weight"
GAIN = Vitals([(-48, W, 80.0), (0, W, 82.1)])  # +2.1 kg in 48 h
RISE = Vitals([(24.0 * d, W, 80.0 + 0.6 * d) for d in range(5)])  # +0.6 kg a day

# 28 days of a stable 80 kg (±0.3, a fixed pattern), then three days 3.5 kg up
_WOBBLE = (0.0, 0.3, -0.2, 0.1, -0.3, 0.2, -0.1)
BASELINE = [(24.0 * d, W, 80.0 + _WOBBLE[d % 7]) for d in range(28)]
DRIFT = Vitals([*BASELINE, *((24.0 * d, W, 83.5) for d in (29, 30, 31))])
SHIFT = Vitals([*BASELINE, *((24.0 * d, W, 80.5) for d in range(31, 35))])

# NEWS2 (post-discharge): pulse 115 (2), temperature 38.5 (1), systolic 105 (1) = 4;
# then SpO2 93 (2): 6 within the 15-minute window
NEWS_4 = Vitals([(0, "heart_rate", 115.0), (0, "body_temperature", 38.5), (0, BP, 105.0)])
NEWS_6 = Vitals([*NEWS_4.readings, (0.1, "spo2", 93.0)])
NEWS_SPREAD = Vitals(
    [(0, "heart_rate", 115.0), (0, "body_temperature", 38.5), (0.3, "spo2", 93.0), (0.3, BP, 105.0)]
)
PULSE_3 = Vitals([(0, "heart_rate", 135.0)])  # a single 3 (and the red pulse limit)
SPO2_90 = Vitals([(0, "spo2", 90.0)])
COPD = ("copd",)
TARGET = "spo2_target"
HYPERCAPNIC = {"low": 88, "high": 92, "scale": 2}
NOT_AT_RISK = {"low": 94, "high": 98, "scale": 1}
SPO2_89 = Vitals([(0, "spo2", 89.0, False)])
SPO2_97_ON_OXYGEN = Vitals([(0, "spo2", 97.0, True)])

# Hypertension's missed:systolic_bp is due 20:00 Europe/London with 60 minutes' grace; the
# last reading was yesterday at 19:00 UTC, and it is 21:30 UTC (winter: London is UTC).
EVENING = Adherence(
    datetime(2026, 12, 2, 21, 30, tzinfo=UTC), {BP: datetime(2026, 12, 1, 19, 0, tzinfo=UTC)}
)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
# a cuff last heard 30 hours ago, a wearable 3 minutes ago, a hub that said it is offline
DEVICES = Adherence(
    NOW,
    devices=[
        ("cuff-1", "bp_cuff", None, NOW - timedelta(hours=30)),
        ("watch-1", "wearable", None, NOW - timedelta(minutes=3)),
        ("hub-1", "hub", "offline", NOW - timedelta(minutes=1)),
    ],
)

# a blood pressure taken with a loose cuff 40 minutes ago, no retake since
LOOSE_CUFF = Adherence(NOW, pending=[(BP, NOW - timedelta(minutes=40), "cuff-1", ("cuff_fit",))])

CASES: list[Effect | Refused] = [
    # threshold
    Effect("threshold", "limit", HT, SEVERE, {"limit": 175}, BP_EDGE),
    Effect("threshold", "inclusive", HT, SEVERE, {"inclusive": False}, BP_RUN),
    Effect("threshold", "priority", HT, SEVERE, {"priority": "amber"}, BP_RUN),
    Effect("threshold", "hysteresis", HT, SEVERE, {"hysteresis": 5}, BP_RUN),
    Effect("threshold", "sustained_min", HT, SEVERE, {"sustained_min": 10}, BP_RUN),
    Effect("threshold", "enabled", HT, SEVERE, {"enabled": False}, BP_RUN),
    Effect(
        "threshold", "direction", HT, HR_MINE, {"direction": "low", "limit": 50}, HR_RUN, HR_RULE
    ),
    Refused("threshold", "unit", HT, SEVERE, {"unit": "kPa"}, "not 'kPa'"),
    Refused("threshold", "metric", HT, SEVERE, {"metric": "diastolic_bp"}, "cannot be changed"),
    Refused("threshold", "id", HT, SEVERE, {"id": "threshold:x"}, "cannot be changed"),
    Refused("threshold", "kind", HT, SEVERE, {"kind": "change"}, "cannot be changed"),
    Refused("threshold", "source", HT, SEVERE, {"source": "my own"}, "cannot be changed"),
    # change
    Effect("change", "delta", HF, "change:body_weight:3d", {"delta": 2.5}, GAIN),
    Effect("change", "window_h", HF, "change:body_weight:3d", {"window_h": 24}, GAIN),
    Effect("change", "direction", HF, "change:body_weight:3d", {"direction": "fall"}, GAIN),
    Effect("change", "priority", HF, "change:body_weight:3d", {"priority": "red"}, GAIN),
    Effect("change", "enabled", HF, "change:body_weight:3d", {"enabled": False}, GAIN),
    Refused("change", "unit", HF, "change:body_weight:3d", {"unit": "g"}, "not 'g'"),
    Refused("change", "metric", HF, "change:body_weight:3d", {"metric": "spo2"}, "cannot be"),
    Refused("change", "id", HF, "change:body_weight:3d", {"id": "change:x"}, "cannot be"),
    Refused("change", "kind", HF, "change:body_weight:3d", {"kind": "slope"}, "cannot be"),
    Refused("change", "source", HF, "change:body_weight:3d", {"source": "mine"}, "cannot be"),
    # slope (off in the template: each case turns it on first)
    *(
        Effect("slope", name, HF, "slope:body_weight", changes, RISE, {"enabled": True})
        for name, changes in (
            ("per_day", {"per_day": 0.7}),
            ("window_days", {"window_days": 2}),
            ("min_points", {"min_points": 6}),
            ("direction", {"direction": "fall"}),
            ("priority", {"priority": "red"}),
            ("enabled", {"enabled": False}),
        )
    ),
    Refused("slope", "unit", HF, "slope:body_weight", {"unit": "g"}, "not 'g'"),
    Refused("slope", "metric", HF, "slope:body_weight", {"metric": "spo2"}, "cannot be"),
    Refused("slope", "id", HF, "slope:body_weight", {"id": "slope:x"}, "cannot be"),
    Refused("slope", "kind", HF, "slope:body_weight", {"kind": "change"}, "cannot be"),
    Refused("slope", "source", HF, "slope:body_weight", {"source": "mine"}, "cannot be"),
    # baseline, EWMA
    *(
        Effect("baseline", name, HF, "baseline:body_weight", changes, DRIFT)
        for name, changes in (
            ("lam", {"lam": 0.05}),
            ("limit_sigma", {"limit_sigma": 30}),
            ("min_delta", {"min_delta": 5}),
            ("baseline_days", {"baseline_days": 5}),
            ("recent_days", {"recent_days": 1}),
            ("min_points", {"min_points": 30}),
            ("min_sigma", {"min_sigma": 2}),
            ("direction", {"direction": "fall"}),
            ("priority", {"priority": "red"}),
            ("enabled", {"enabled": False}),
            ("method", {"method": "cusum", "min_delta": 0}),
        )
    ),
    Refused("baseline", "k_sigma", HF, "baseline:body_weight", {"k_sigma": 1}, "cusum setting"),
    Refused("baseline", "h_sigma", HF, "baseline:body_weight", {"h_sigma": 4}, "cusum setting"),
    Refused("baseline", "method", HF, "baseline:body_weight", {"method": "cusum"}, "min_delta=0"),
    Refused("baseline", "unit", HF, "baseline:body_weight", {"unit": "g"}, "not 'g'"),
    Refused("baseline", "metric", HF, "baseline:body_weight", {"metric": "spo2"}, "cannot be"),
    Refused("baseline", "id", HF, "baseline:body_weight", {"id": "baseline:x"}, "cannot be"),
    Refused("baseline", "kind", HF, "baseline:body_weight", {"kind": "slope"}, "cannot be"),
    Refused("baseline", "source", HF, "baseline:body_weight", {"source": "m"}, "cannot be"),
    # baseline, CUSUM (off in the template: each case turns it on first)
    *(
        Effect(
            "baseline", name, HF, "baseline:body_weight:cusum", changes, SHIFT, {"enabled": True}
        )
        for name, changes in (
            ("k_sigma", {"k_sigma": 6}),
            ("h_sigma", {"h_sigma": 100}),
            ("method", {"method": "ewma"}),
        )
    ),
    *(
        Refused("baseline", name, HF, "baseline:body_weight:cusum", {name: value}, "ewma setting")
        for name, value in (("lam", 0.2), ("limit_sigma", 2), ("min_delta", 1))
    ),
    # news2
    Effect("news2", "amber_at", PD, "news2", {"amber_at": 4}, NEWS_4),
    Effect("news2", "red_at", PD, "news2", {"red_at": 6}, NEWS_6),
    Effect("news2", "single_parameter_3", PD, "news2", {"single_parameter_3": False}, PULSE_3),
    Effect("news2", "window_min", PD, "news2", {"window_min": 30}, NEWS_SPREAD),
    Effect("news2", "enabled", PD, "news2", {"enabled": False}, NEWS_6),
    Refused("news2", "spo2_scale", PD, "news2", {"spo2_scale": 2}, "recorded with the patient's"),
    # the SpO2 target and scale, a clinician's decision (COPD asks for it)
    Effect("spo2_target", "low", COPD, TARGET, {"low": 90}, SPO2_89, HYPERCAPNIC),
    Effect("spo2_target", "high", COPD, TARGET, {"high": 96}, SPO2_97_ON_OXYGEN, NOT_AT_RISK),
    Effect("spo2_target", "scale", COPD, TARGET, {"scale": 1}, SPO2_90, HYPERCAPNIC),
    Refused("spo2_target", "scale", COPD, TARGET, {"scale": 2}, "88–92 %", NOT_AT_RISK),
    Refused("spo2_target", "low", COPD, TARGET, {"low": 88}, "give both low and high"),
    Refused("spo2_target", "high", COPD, TARGET, {"high": 80}, "must be below high", HYPERCAPNIC),
    Refused("spo2_target", "enabled", COPD, TARGET, {"enabled": False}, "cannot be turned off"),
    Refused("spo2_target", "id", COPD, TARGET, {"id": "target"}, "cannot be"),
    Refused("spo2_target", "kind", COPD, TARGET, {"kind": "news2"}, "cannot be"),
    Refused("spo2_target", "source", COPD, TARGET, {"source": "m"}, "cannot be"),
    Refused("news2", "amber_at", PD, "news2", {"amber_at": 7}, "must be below red_at"),
    Refused("news2", "red_at", PD, "news2", {"red_at": 21}, "less than or equal to 20"),
    Refused("news2", "id", PD, "news2", {"id": "news3"}, "cannot be changed"),
    Refused("news2", "kind", PD, "news2", {"kind": "missed"}, "cannot be changed"),
    Refused("news2", "source", PD, "news2", {"source": "mine"}, "cannot be changed"),
    # missed readings
    Effect("missed", "due", HT, "missed:systolic_bp", {"due": "22:00"}, EVENING),
    Effect("missed", "grace_min", HT, "missed:systolic_bp", {"grace_min": 120}, EVENING),
    Effect("missed", "tz", HT, "missed:systolic_bp", {"tz": "America/New_York"}, EVENING),
    Effect("missed", "enabled", HT, "missed:systolic_bp", {"enabled": False}, EVENING),
    Refused("missed", "tz", HT, "missed:systolic_bp", {"tz": "Mars/Olympus"}, "time zone"),
    Refused("missed", "metric", HT, "missed:systolic_bp", {"metric": "spo2"}, "cannot be"),
    Refused("missed", "id", HT, "missed:systolic_bp", {"id": "missed:x"}, "cannot be"),
    Refused("missed", "kind", HT, "missed:systolic_bp", {"kind": "news2"}, "cannot be"),
    Refused("missed", "source", HT, "missed:systolic_bp", {"source": "mine"}, "cannot be"),
    # silent devices
    Effect(
        "device_silence", "spot_cadence_h", HT, "device_silence", {"spot_cadence_h": 12}, DEVICES
    ),
    Effect(
        "device_silence",
        "continuous_cadence_min",
        HT,
        "device_silence",
        {"continuous_cadence_min": 1},
        DEVICES,
    ),
    Effect("device_silence", "factor", HT, "device_silence", {"factor": 1}, DEVICES),
    Effect(
        "device_silence", "offline_alerts", HT, "device_silence", {"offline_alerts": False}, DEVICES
    ),
    Effect("device_silence", "enabled", HT, "device_silence", {"enabled": False}, DEVICES),
    Refused("device_silence", "factor", HT, "device_silence", {"factor": 0.5}, "greater than"),
    Refused("device_silence", "id", HT, "device_silence", {"id": "silence"}, "cannot be"),
    Refused("device_silence", "kind", HT, "device_silence", {"kind": "news2"}, "cannot be"),
    Refused("device_silence", "source", HT, "device_silence", {"source": "m"}, "cannot be"),
    # questionable readings
    Effect("quality", "retake_within_min", HT, "quality", {"retake_within_min": 60}, LOOSE_CUFF),
    Refused("quality", "enabled", HT, "quality", {"enabled": False}, "always held for a retake"),
    Refused("quality", "retake_within_min", HT, "quality", {"retake_within_min": 0}, "greater"),
    Refused("quality", "id", HT, "quality", {"id": "q"}, "cannot be"),
    Refused("quality", "kind", HT, "quality", {"kind": "news2"}, "cannot be"),
    Refused("quality", "source", HT, "quality", {"source": "m"}, "cannot be"),
]


def _name(case: Effect | Refused) -> str:
    verdict = "refused" if isinstance(case, Refused) else "changes"
    return (
        f"{case.rule}-{case.fld}-{'-'.join(f'{k}={v}' for k, v in case.changes.items())}-{verdict}"
    )


def _overrides(case: Effect | Refused, changed: bool) -> dict[str, Any]:
    rule = dict(case.base)
    if changed:
        rule.update(case.changes)
    return {case.rule: rule} if rule else {}


@pytest.mark.parametrize("case", [c for c in CASES if isinstance(c, Effect)], ids=_name)
def test_a_changed_setting_changes_the_decision(case: Effect) -> None:
    before = case.given.decide(case.conditions, _overrides(case, changed=False))
    after = case.given.decide(case.conditions, _overrides(case, changed=True))
    assert before != after, f"{case.rule} {dict(case.changes)} decided the same: {before}"


@pytest.mark.parametrize("case", [c for c in CASES if isinstance(c, Refused)], ids=_name)
def test_a_setting_without_effect_is_refused(case: Effect | Refused) -> None:
    assert isinstance(case, Refused)
    template = template_ruleset(case.conditions)
    with pytest.raises(ValidationError, match="nothing applied") as refused:
        apply_overrides(template, _overrides(case, changed=True))
    assert case.message in str(refused.value)


def _models() -> list[type[Any]]:
    return list(get_args(RuleConfig))


def test_every_field_of_every_kind_has_a_case() -> None:
    """Every field of every rule kind: changing it has an effect, or it is refused."""
    missing = []
    for model in _models():
        kind = model.model_fields["kind"].default
        covered = {c.fld for c in CASES if c.kind == kind}
        missing += [f"{kind}.{name}" for name in model.model_fields if name not in covered]
    assert missing == []


def test_the_cases_start_from_what_the_service_decides() -> None:
    """Sanity: each effect case's input decides something (or the change makes it)."""
    for case in CASES:
        if isinstance(case, Effect):
            both = case.given.decide(case.conditions, _overrides(case, False)) | case.given.decide(
                case.conditions, _overrides(case, True)
            )
            assert both, _name(case)


def test_the_cusum_rule_runs_cusum_and_says_so() -> None:
    """``baseline:…:cusum`` used to run EWMA with other parameters, labelled ewma."""
    engine = RuleEngine()
    rules = {
        "baseline:body_weight:cusum": {"enabled": True},
        "baseline:body_weight": {"enabled": False},
    }
    engine.load(PatientSnapshot(1, 1, HF, rules, [], frozenset()))
    hits = []
    for hours, metric, value, *_ in SHIFT.readings:
        hits += [
            h for _, h in engine.evaluate([ManualObservation(1, metric, _at(hours), value)]).hits
        ]
    assert [(h.rule_id, h.details["method"]) for h in hits] == [
        ("baseline:body_weight:cusum", "cusum")
    ]
    assert "CUSUM" in hits[0].message
    assert hits[0].details["cusum_sigma"] > 5.0  # h = 5σ
