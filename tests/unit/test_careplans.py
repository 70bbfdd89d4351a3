"""Care-plan templates against the published sources of docs/references.md (the expected
numbers are typed here from them, not read from the code), merging conditions, and overrides
validated all-or-nothing."""

from __future__ import annotations

from datetime import time
from itertools import combinations
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.careplans import (
    TEMPLATES,
    BaselineRuleConfig,
    ChangeRuleConfig,
    DeviceSilenceConfig,
    MissedReadingConfig,
    News2RuleConfig,
    PatientRuleSet,
    RuleConfig,
    SlopeRuleConfig,
    ThresholdRuleConfig,
    apply_overrides,
    coerce_override_value,
    effective_rules,
    sensitivity,
    template_ruleset,
)
from alerts.rules.missed import Schedule
from alerts.rules.threshold import ThresholdRule
from alerts.rules.trend import BaselineRule, CusumRule
from alerts.rules.types import Priority
from homeward.errors import ValidationError

CONDITIONS = ("copd", "heart_failure", "hypertension", "post_discharge", "type2_diabetes")

# (condition, rule id, direction, limit, inclusive, priority, the source must mention)
THRESHOLDS = [
    # NICE NG136: severe hypertension, systolic ≥ 180 or diastolic ≥ 120
    ("hypertension", "threshold:systolic_bp:severe", "high", 180, True, "red", "NG136"),
    ("hypertension", "threshold:diastolic_bp:severe", "high", 120, True, "red", "NG136"),
    # NICE NG136: home stage 2 from 150/95
    ("hypertension", "threshold:systolic_bp:stage2", "high", 150, True, "amber", "NG136"),
    ("hypertension", "threshold:diastolic_bp:stage2", "high", 95, True, "amber", "NG136"),
    # low: systolic ≤ 90 (NEWS2 band 3)
    ("hypertension", "threshold:systolic_bp:low", "low", 90, True, "red", "NEWS2"),
    # NEWS2 scale 1: SpO2 ≤ 91 scores 3
    ("heart_failure", "threshold:spo2:low", "low", 91, True, "red", "NEWS2"),
    # BTS 2017: target 88–92% with hypercapnic risk; below target needs reassessment
    ("copd", "threshold:spo2:low", "low", 88, False, "red", "BTS 2017"),
    # NEWS2: 38.1–39.0 °C scores 1
    ("copd", "threshold:body_temperature:fever", "high", 38.1, True, "amber", "NEWS2"),
    # glucose: below 3.0 clinically significant; four is the floor; Battelino > 13.9
    ("type2_diabetes", "threshold:blood_glucose:severe", "low", 3.0, False, "red", "3.0"),
    ("type2_diabetes", "threshold:blood_glucose:hypo", "low", 4.0, False, "amber", "four"),
    ("type2_diabetes", "threshold:blood_glucose:high", "high", 13.9, False, "amber", "Battelino"),
    # NEWS2 chart 1, the parameters a home kit measures, a 3 in a single parameter
    ("post_discharge", "threshold:spo2:low", "low", 91, True, "red", "NEWS2"),
    ("post_discharge", "threshold:heart_rate:high", "high", 131, True, "red", "NEWS2"),
    ("post_discharge", "threshold:heart_rate:low", "low", 40, True, "red", "NEWS2"),
    ("post_discharge", "threshold:systolic_bp:low", "low", 90, True, "red", "NEWS2"),
    ("post_discharge", "threshold:body_temperature:low", "low", 35.0, True, "red", "NEWS2"),
    # NEWS2: ≥ 39.1 °C scores 2
    ("post_discharge", "threshold:body_temperature:fever", "high", 39.1, True, "amber", "NEWS2"),
]


def rules_of(condition: str) -> dict[str, RuleConfig]:
    return dict(template_ruleset([condition]).rules)


@pytest.mark.parametrize(
    ("condition", "rule_id", "direction", "limit", "inclusive", "priority", "cites"), THRESHOLDS
)
def test_threshold_defaults(
    condition: str,
    rule_id: str,
    direction: str,
    limit: float,
    inclusive: bool,
    priority: str,
    cites: str,
) -> None:
    rule = rules_of(condition)[rule_id]
    assert isinstance(rule, ThresholdRuleConfig)
    assert (rule.direction, rule.limit, rule.inclusive, rule.priority) == (
        direction,
        limit,
        inclusive,
        priority,
    )
    assert rule.enabled
    assert cites in rule.source
    assert rule.unit == {"systolic_bp": "mm[Hg]", "diastolic_bp": "mm[Hg]", "spo2": "%"}.get(
        rule.metric, rule.unit
    )


def test_heart_failure_weight_defaults() -> None:
    rules = rules_of("heart_failure")
    three, one = rules["change:body_weight:3d"], rules["change:body_weight:1d"]
    assert isinstance(three, ChangeRuleConfig)
    assert isinstance(one, ChangeRuleConfig)
    assert (three.delta, three.window_h, three.direction) == (2.0, 72, "rise")  # > 2 kg / 3 d
    assert "ESC" in three.source
    assert (one.delta, one.window_h) == (1.5, 24)
    assert "no published source" in one.source  # said plainly: a local convention
    ewma = rules["baseline:body_weight"]
    assert isinstance(ewma, BaselineRuleConfig)
    assert (ewma.method, ewma.baseline_days, ewma.min_delta) == ("ewma", 28, 2.0)  # ≥ 2 kg, 28 d
    assert 0.1 <= ewma.lam <= 0.3  # λ 0.1–0.3
    assert ewma.limit_sigma == 3.0  # limits around 3σ
    assert ewma.enabled
    cusum = rules["baseline:body_weight:cusum"]
    assert isinstance(cusum, BaselineRuleConfig)
    assert cusum.method == "cusum"
    assert cusum.k_sigma == 0.5  # k ≈ 0.5σ
    assert 4 <= cusum.h_sigma <= 5  # h ≈ 4–5σ
    assert not cusum.enabled
    slope = rules["slope:body_weight"]
    assert isinstance(slope, SlopeRuleConfig)
    assert not slope.enabled


def test_copd_defaults() -> None:
    fall = rules_of("copd")["baseline:spo2"]
    assert isinstance(fall, BaselineRuleConfig)
    assert (fall.direction, fall.min_delta, fall.unit) == ("fall", 3.0, "%")  # 3 points
    assert "BTS 2017" in fall.source


@pytest.mark.parametrize("condition", CONDITIONS)
def test_news2_defaults(condition: str) -> None:
    news2 = rules_of(condition).get("news2")
    if condition in ("hypertension", "type2_diabetes"):
        assert news2 is None
        return
    assert isinstance(news2, News2RuleConfig)
    # scale 1 unless a clinician documents hypercapnic failure; 5 medium, 7 high, a single 3
    assert (news2.spo2_scale, news2.amber_at, news2.red_at, news2.single_parameter_3) == (
        1,
        5,
        7,
        True,
    )
    assert "NEWS2 2017" in news2.source


@pytest.mark.parametrize(
    ("condition", "metric", "due"),
    [
        ("heart_failure", "body_weight", "10:00"),
        ("hypertension", "systolic_bp", "20:00"),
        ("copd", "spo2", "12:00"),
        ("type2_diabetes", "blood_glucose", "10:00"),
    ],
)
def test_missed_reading_defaults(condition: str, metric: str, due: str) -> None:
    rule = rules_of(condition)[f"missed:{metric}"]
    assert isinstance(rule, MissedReadingConfig)
    assert (rule.due, rule.tz, rule.grace_min) == (due, "Europe/London", 60)
    assert rule.to_rule() == Schedule(f"missed:{metric}", metric, time(int(due[:2]), int(due[3:])))


@pytest.mark.parametrize("condition", CONDITIONS)
def test_every_template_watches_its_devices_and_names_every_source(condition: str) -> None:
    silence = rules_of(condition)["device_silence"]
    assert isinstance(silence, DeviceSilenceConfig)
    assert (silence.factor, silence.spot_cadence_h, silence.continuous_cadence_min) == (2, 24, 2)
    for rule in TEMPLATES[condition]:
        assert len(rule.source) > 10, rule.id
        assert rule.id.split(":")[0] in (rule.kind, "device_silence")


def test_the_templates_are_exactly_these() -> None:
    ids = {condition: sorted(r.id for r in rules) for condition, rules in TEMPLATES.items()}
    assert set(ids) == set(CONDITIONS)
    assert len(ids["hypertension"]) == 8
    assert len(ids["heart_failure"]) == 10
    assert len(ids["copd"]) == 8  # + spo2_target, asked for
    assert len(ids["type2_diabetes"]) == 6
    assert len(ids["post_discharge"]) == 9
    assert all("quality" in rule_ids for rule_ids in ids.values())  # questionable readings
    for condition, rules in TEMPLATES.items():
        assert len({r.id for r in rules}) == len(rules), condition


# --- several conditions -----------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_every_combination_of_conditions_is_a_valid_rule_set(count: int) -> None:
    for conditions in combinations(CONDITIONS, count):
        merged = apply_overrides(template_ruleset(conditions), {})
        expected = {r.id for c in conditions for r in TEMPLATES[c]}
        assert set(merged.rules) == expected
        assert template_ruleset(reversed(conditions)) == template_ruleset(conditions)


def test_heart_failure_and_diabetes_is_the_union() -> None:
    merged = template_ruleset(["heart_failure", "type2_diabetes"])
    assert merged.origin("change:body_weight:3d") == "template:heart_failure"
    assert merged.origin("threshold:blood_glucose:hypo") == "template:type2_diabetes"
    assert merged.conditions == ("heart_failure", "type2_diabetes")


@pytest.mark.parametrize(
    ("conditions", "rule_id", "limit", "origin"),
    [
        # ≤ 91 (heart failure) alerts sooner than < 88 (COPD)
        (["copd", "heart_failure"], "threshold:spo2:low", 91, "template:heart_failure"),
        # ≥ 38.1 (COPD) alerts sooner than ≥ 39.1 (post-discharge)
        (["post_discharge", "copd"], "threshold:body_temperature:fever", 38.1, "template:copd"),
        # the same setting in two templates: the first condition alphabetically
        (
            ["post_discharge", "hypertension"],
            "threshold:systolic_bp:low",
            90,
            "template:hypertension",
        ),
    ],
)
def test_the_more_sensitive_setting_wins(
    conditions: list[str], rule_id: str, limit: float, origin: str
) -> None:
    merged = template_ruleset(conditions)
    rule = merged.rules[rule_id]
    assert isinstance(rule, ThresholdRuleConfig)
    assert rule.limit == limit
    assert merged.origin(rule_id) == origin


def test_sensitivity_order() -> None:
    high = rules_of("hypertension")["threshold:systolic_bp:severe"]
    assert isinstance(high, ThresholdRuleConfig)
    lower = high.model_copy(update={"limit": 170})
    assert sensitivity(lower) > sensitivity(high)
    assert sensitivity(high) > sensitivity(high.model_copy(update={"enabled": False}))
    low = rules_of("type2_diabetes")["threshold:blood_glucose:hypo"]
    assert sensitivity(low.model_copy(update={"limit": 4.5})) > sensitivity(low)
    change = rules_of("heart_failure")["change:body_weight:3d"]
    assert sensitivity(change.model_copy(update={"delta": 1.0})) > sensitivity(change)


def test_an_unknown_condition_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown condition heart_failiure"):
        template_ruleset(["heart_failiure"])


# --- overrides --------------------------------------------------------------------------


def test_override_with_provenance_per_value() -> None:
    template = template_ruleset(["hypertension"])
    changed = apply_overrides(
        template, {"threshold:systolic_bp:severe": {"limit": 170, "hysteresis": 5}}
    )
    severe = changed.rules["threshold:systolic_bp:severe"]
    assert isinstance(severe, ThresholdRuleConfig)
    assert (severe.limit, severe.hysteresis, severe.priority) == (170, 5, "red")
    where = changed.provenance["threshold:systolic_bp:severe"]
    assert (where["limit"], where["hysteresis"]) == ("override", "override")
    assert where["priority"] == where["direction"] == "template:hypertension"
    assert changed.overridden("threshold:systolic_bp:severe") == ("hysteresis", "limit")
    assert changed.origin("threshold:systolic_bp:severe") == "override"
    assert changed.origin("threshold:systolic_bp:stage2") == "template:hypertension"
    assert template.rules["threshold:systolic_bp:severe"] == severe.model_copy(
        update={"limit": 180, "hysteresis": 10}
    )  # the template is untouched
    effective = effective_rules(
        ["hypertension"], {"threshold:systolic_bp:severe": {"limit": 170, "hysteresis": 5}}
    )
    assert effective["threshold:systolic_bp:severe"].overridden == ("hysteresis", "limit")


def test_a_patient_specific_rule_can_be_added() -> None:
    added = apply_overrides(
        template_ruleset(["hypertension"]),
        {
            "threshold:heart_rate:high": {
                "kind": "threshold",
                "metric": "heart_rate",
                "unit": "/min",
                "direction": "high",
                "limit": 120,
                "priority": "amber",
            }
        },
    )
    rule = added.rules["threshold:heart_rate:high"]
    assert isinstance(rule, ThresholdRuleConfig)
    assert rule.source == "patient-specific rule set by a clinician"
    assert set(added.provenance["threshold:heart_rate:high"].values()) == {"override"}


HTN = ["hypertension"]
HF = ["heart_failure"]
SEVERE = "threshold:systolic_bp:severe"
KETONES = {
    "kind": "threshold",
    "metric": "ketones",
    "unit": "mmol/L",
    "direction": "high",
    "limit": 3.0,
    "priority": "red",
}


@pytest.mark.parametrize(
    ("conditions", "overrides", "message"),
    [
        (HTN, {"threshold:systolic_bp:low": {"limit": 200}}, "not below"),
        (HTN, {"threshold:ketones:high": KETONES}, "unknown metric 'ketones'"),
        (HTN, {SEVERE: {"unit": "kPa"}}, "set in mm[Hg], not 'kPa'"),
        (HTN, {SEVERE: {"limit": float("nan")}}, "finite"),
        (HTN, {SEVERE: {"limit": float("inf")}}, "finite"),
        (HTN, {SEVERE: {"limit": "abc"}}, "valid number"),
        (HTN, {SEVERE: {"limit": 1800}}, "outside what systolic_bp can be"),
        (HTN, {SEVERE: {"hysteresis": -1}}, "hysteresis: Input should be greater than or equal"),
        (HTN, {SEVERE: {"sustained_min": -5}}, "sustained_min: Input should be greater than"),
        (HTN, {SEVERE: {"priority": "purple"}}, "'red' or 'amber'"),
        (HTN, {SEVERE: {"limt": 170}}, "limt: Extra inputs are not permitted"),
        (HTN, {SEVERE: {"metric": "spo2"}}, "metric cannot be changed"),
        (HTN, {SEVERE: {"kind": "change"}}, "kind cannot be changed"),
        (HTN, {SEVERE: {"source": "me"}}, "source cannot be changed"),
        (HTN, {SEVERE: {}}, "field=value"),
        (HTN, {"threshold:systolic_bp:stage2": {"limit": 190}}, "amber limit must be less"),
        (HTN, {"threshold:ketones:high": {"limit": 3}}, "no such rule"),
        (HTN, {"missed:systolic_bp": {"due": "25:00"}}, "due: String should match pattern"),
        (HTN, {"missed:systolic_bp": {"tz": "Mars/Base"}}, "unknown time zone 'Mars/Base'"),
        (HTN, {"missed:systolic_bp": {"grace_min": -10}}, "grace_min"),
        (HTN, {"device_silence": {"factor": 0.5}}, "factor"),
        (HF, {"change:body_weight:3d": {"window_h": -72}}, "window_h: Input should be greater"),
        (HF, {"change:body_weight:3d": {"delta": 0}}, "delta"),
        (HF, {"baseline:body_weight": {"baseline_days": 40}}, "at most 35"),
        (HF, {"baseline:body_weight": {"lam": 1.5}}, "lam"),
        (HF, {"news2": {"amber_at": 8}}, "amber_at 8 must be below red_at 7"),
        (HF, {"news2": {"spo2_scale": 3}}, "spo2_scale"),
    ],
)
def test_bad_configuration_is_refused_and_nothing_applied(
    conditions: list[str], overrides: dict[str, dict[str, Any]], message: str
) -> None:
    template = template_ruleset(conditions)
    before = template.rules
    with pytest.raises(ValidationError, match="nothing applied") as refused:
        apply_overrides(template, overrides)
    assert message in str(refused.value)
    assert template.rules == before


def test_one_bad_change_refuses_the_good_ones_and_every_problem_is_named() -> None:
    overrides: dict[str, dict[str, Any]] = {
        "threshold:systolic_bp:stage2": {"limit": 155},  # fine on its own
        SEVERE: {"hysteresis": -1},
        "threshold:diastolic_bp:severe": {"unit": "kPa"},
    }
    with pytest.raises(ValidationError) as refused:
        effective_rules(HTN, overrides)
    text = str(refused.value)
    assert f"{SEVERE}: hysteresis" in text
    assert "threshold:diastolic_bp:severe: diastolic_bp limits are set in mm[Hg]" in text
    assert "stage2" not in text


def test_overrides_must_be_a_mapping() -> None:
    with pytest.raises(ValidationError, match="map rule ids"):
        apply_overrides(template_ruleset(HTN), [("x", {})])  # type: ignore[arg-type]


FIELDS = ["limit", "hysteresis", "priority", "enabled", "inclusive", "sustained_min", "unit"]
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@given(st.dictionaries(st.sampled_from(FIELDS), VALUES, min_size=1, max_size=4))
def test_any_override_is_applied_whole_or_refused_with_our_error(changes: dict[str, Any]) -> None:
    template = template_ruleset(HTN)
    try:
        changed = apply_overrides(template, {SEVERE: changes})
    except ValidationError:
        return
    assert isinstance(changed, PatientRuleSet)
    assert changed.overridden(SEVERE) == tuple(sorted(changes))


def test_configs_are_frozen_and_compile_to_pure_rules() -> None:
    severe = rules_of("hypertension")[SEVERE]
    assert isinstance(severe, ThresholdRuleConfig)
    with pytest.raises(pydantic.ValidationError):
        severe.limit = 170  # type: ignore[misc]
    sustained = severe.model_copy(update={"sustained_min": 5})
    assert sustained.to_rule() == ThresholdRule(
        SEVERE, "systolic_bp", "high", 180, Priority.RED, 10, 300
    )
    weight = rules_of("heart_failure")
    ewma, cusum = weight["baseline:body_weight"], weight["baseline:body_weight:cusum"]
    assert isinstance(ewma, BaselineRuleConfig)
    assert isinstance(cusum, BaselineRuleConfig)
    assert isinstance(ewma.to_rule(), BaselineRule)
    compiled = cusum.to_rule()
    assert isinstance(compiled, CusumRule)
    assert (compiled.k_sigma, compiled.h_sigma, compiled.guard_days) == (0.5, 5.0, 3)


@pytest.mark.parametrize(
    ("text", "value"),
    [("170", 170), ("38.5", 38.5), ("1e2", 100), ("true", True), ("False", False), ("x", "x")],
)
def test_command_line_values(text: str, value: object) -> None:
    assert coerce_override_value(text) == value
    assert type(coerce_override_value(text)) is type(value)
