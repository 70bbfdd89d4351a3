"""Care-plan defaults against docs/references.md (typed from it), overrides, and missed readings
with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from alerts.careplans import TEMPLATES, ChangeConfig, ThresholdConfig, effective_rules
from alerts.rules.missed import Schedule, device_silent, missed, next_check_at
from homeward.errors import ValidationError

# (condition, rule id, direction, limit, inclusive, priority) — docs/references.md
THRESHOLDS = [
    ("hypertension", "threshold:systolic_bp:severe", "high", 180, True, "red"),  # NG136 ≥ 180
    ("hypertension", "threshold:diastolic_bp:severe", "high", 120, True, "red"),  # ≥ 120
    ("hypertension", "threshold:systolic_bp:stage2", "high", 150, True, "amber"),  # 150/95
    ("hypertension", "threshold:systolic_bp:low", "low", 90, True, "red"),  # ≤ 90
    ("type2_diabetes", "threshold:blood_glucose:severe", "low", 3.0, False, "red"),  # < 3.0
    ("type2_diabetes", "threshold:blood_glucose:hypo", "low", 4.0, False, "amber"),  # < 4.0
    ("type2_diabetes", "threshold:blood_glucose:high", "high", 13.9, False, "amber"),  # > 13.9
    ("copd", "threshold:spo2:low", "low", 88, False, "red"),  # BTS: below 88–92
    ("heart_failure", "threshold:spo2:low", "low", 91, True, "red"),  # NEWS2 ≤ 91 → 3
    ("post_discharge", "threshold:heart_rate:high", "high", 131, True, "red"),  # NEWS2 ≥ 131
]


@pytest.mark.parametrize(
    ("condition", "rule_id", "direction", "limit", "inclusive", "priority"), THRESHOLDS
)
def test_threshold_defaults(
    condition: str, rule_id: str, direction: str, limit: float, inclusive: bool, priority: str
) -> None:
    rule = effective_rules([condition], {})[rule_id].rule
    assert isinstance(rule, ThresholdConfig)
    assert (rule.direction, rule.limit, rule.inclusive, rule.priority) == (
        direction,
        limit,
        inclusive,
        priority,
    )
    assert rule.source


def test_heart_failure_weight_defaults() -> None:
    rules = effective_rules(["heart_failure"], {})
    three_days, one_day = rules["change:body_weight:3d"].rule, rules["change:body_weight:1d"].rule
    assert isinstance(three_days, ChangeConfig)
    assert isinstance(one_day, ChangeConfig)
    assert (three_days.delta, three_days.window_h) == (2.0, 72)  # ESC HFA: > 2 kg in 3 days
    assert (one_day.delta, one_day.window_h) == (1.5, 24)
    baseline = rules["baseline:body_weight"].rule
    assert (baseline.baseline_days, baseline.min_delta) == (28, 2.0)  # 2 kg vs 28 days
    assert 0.1 <= baseline.lam <= 0.3  # docs/references.md: λ 0.1–0.3
    assert baseline.limit_sigma == 3.0  # limits around 3σ


def test_every_template_default_names_its_source() -> None:
    for condition, rules in TEMPLATES.items():
        for rule in rules:
            assert len(rule.source) > 5, (condition, rule.id)
    assert set(TEMPLATES) == {
        "heart_failure",
        "copd",
        "hypertension",
        "type2_diabetes",
        "post_discharge",
    }


def test_merged_templates_keep_the_more_sensitive_setting() -> None:
    rules = effective_rules(["copd", "heart_failure"], {})
    assert rules["threshold:spo2:low"].rule.limit == 91  # HF ≤ 91 is more sensitive than < 88
    assert rules["threshold:spo2:low"].origin == "template:heart_failure"


def test_override_round_trip_and_provenance() -> None:
    rules = effective_rules(["hypertension"], {"threshold:systolic_bp:severe": {"limit": 170}})
    assert rules["threshold:systolic_bp:severe"].rule.limit == 170
    assert rules["threshold:systolic_bp:severe"].origin == "override"
    assert rules["threshold:systolic_bp:stage2"].origin == "template:hypertension"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"threshold:systolic_bp:low": {"limit": 200}}, "not below"),
        ({"threshold:systolic_bp:severe": {"unit": "kPa"}}, "not 'kPa'"),
        ({"threshold:systolic_bp:severe": {"limit": float("nan")}}, "finite"),
        ({"threshold:systolic_bp:severe": {"hysteresis": -1}}, "greater than or equal"),
        ({"threshold:ketones:high": {"limit": 3}}, "no such rule"),
        ({"threshold:systolic_bp:severe": {"metric": "spo2"}}, "cannot be changed"),
    ],
)
def test_bad_overrides_are_refused(overrides: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        effective_rules(["hypertension"], overrides)


LONDON = ZoneInfo("Europe/London")
WEIGHT = Schedule("missed:body_weight", "body_weight", time(10, 0), "Europe/London", 60)


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=LONDON)


@pytest.mark.parametrize(
    ("last", "now", "is_missed"),
    [
        (at(22, 8), at(22, 11, 30), False),  # weighed this morning
        (at(21, 8), at(22, 10, 59), False),  # still within the grace period: yesterday counts
        (at(21, 8), at(22, 11, 0), True),  # deadline 10:00 + 60 min passed
        (None, at(22, 11, 1), True),
        (at(22, 10, 45), at(22, 12), False),  # late but within grace
    ],
)
def test_missed_reading(last: datetime | None, now: datetime, is_missed: bool) -> None:
    assert (missed(WEIGHT, last, now) is not None) is is_missed


def test_restart_in_the_middle_of_the_grace_period_decides_the_same() -> None:
    last = at(21, 8)
    before_restart = missed(WEIGHT, last, at(22, 10, 30))
    after_restart = missed(WEIGHT, last, at(22, 10, 45))  # recomputed from stored data
    assert before_restart is None
    assert after_restart is None
    assert missed(WEIGHT, last, at(22, 11, 5)) == missed(WEIGHT, last, at(22, 11, 5))
    assert next_check_at(WEIGHT, at(22, 10, 30)) == at(22, 11, 0)


def test_deadlines_follow_daylight_saving() -> None:
    # Clocks go back on 25 October 2026: 11:00 London is 11:00 UTC after, 10:00 UTC before.
    assert next_check_at(WEIGHT, at(24, 12, month=10)).astimezone(UTC).hour == 11
    assert next_check_at(WEIGHT, at(23, 12, month=10)).astimezone(UTC).hour == 10


def test_device_silence() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    assert (
        device_silent(
            "sc-1",
            last_seen=now - timedelta(hours=30),
            status="online",
            expected_cadence_s=86_400,
            now=now,
        )
        is None
    )
    assert (
        device_silent(
            "sc-1",
            last_seen=now - timedelta(hours=49),
            status="online",
            expected_cadence_s=86_400,
            now=now,
        )
        is not None
    )
    assert (
        device_silent("sc-1", last_seen=now, status="offline", expected_cadence_s=86_400, now=now)
        is not None
    )
