"""COPD: the SpO2 target range and NEWS2 scale are a clinician's recorded decision per
patient (issue 14, item 4). Until recorded, NEWS2 leaves SpO2 out and each SpO2 reading
asks for it, instead of scoring a reading inside the patient's own 88–92 % as 3; once
recorded, NEWS2 uses the scale and the low SpO2 limit follows the target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.careplans import ThresholdRuleConfig, effective_rules
from alerts.engine import ManualObservation, PatientSnapshot, RuleEngine
from alerts.rules.types import Priority
from homeward.errors import ValidationError

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
HYPERCAPNIC = {"spo2_target": {"low": 88, "high": 92, "scale": 2}}


def hits(
    conditions: tuple[str, ...], overrides: dict[str, Any], *readings: ManualObservation
) -> list[Any]:
    engine = RuleEngine()
    engine.load(PatientSnapshot(1, 1, conditions, overrides, [], frozenset()))
    out = []
    for reading in readings:
        out += [hit for _, hit in engine.evaluate([reading]).hits]
    return out


def spo2(value: float, minutes: float = 0, oxygen: bool | None = False) -> ManualObservation:
    return ManualObservation(1, "spo2", T0 + timedelta(minutes=minutes), value, on_oxygen=oxygen)


def test_copd_without_a_recorded_target_asks_for_it_instead_of_alarming() -> None:
    found = hits(("copd",), {}, spo2(90), spo2(89, 60), spo2(91, 120))
    assert {h.rule_id for h in found} == {"spo2_target"}  # scale 1 would score 3: amber
    assert {h.priority for h in found} == {Priority.TECHNICAL}
    assert "record this patient's SpO2 target" in found[0].message


def test_without_a_target_news2_is_partial_without_spo2_and_the_floor_still_alarms() -> None:
    pulse = ManualObservation(1, "heart_rate", T0, 135)  # 3
    found = hits(("copd",), {}, pulse, spo2(86, 1))
    news2 = [h for h in found if h.rule_id == "news2"]
    assert news2
    assert all("spo2" not in h.details["points"] for h in news2)
    assert "SpO2 not scored" in news2[-1].message
    assert ("threshold:spo2:low", Priority.RED) in {(h.rule_id, h.priority) for h in found}


def test_a_recorded_88_to_92_target_on_scale_2_is_quiet_inside_the_target() -> None:
    assert hits(("copd",), HYPERCAPNIC, spo2(90), spo2(88, 60), spo2(92, 120)) == []


# RCP NEWS2 2017 chart 1, SpO2 scale 2 (typed from the chart): ≤ 83 → 3, 84–85 → 2,
# 86–87 → 1, 88–92 → 0, ≥ 93 on air → 0; on oxygen 93–94 → 1, 95–96 → 2, ≥ 97 → 3; and
# supplemental oxygen itself scores 2.
SCALE_2 = [
    (83, False, 3),
    (84, False, 2),
    (85, False, 2),
    (86, False, 1),
    (87, False, 1),
    (88, False, 0),
    (92, False, 0),
    (93, False, 0),
    (99, False, 0),
    (92, True, 0),
    (93, True, 1),
    (94, True, 1),
    (95, True, 2),
    (96, True, 2),
    (97, True, 3),
]


@pytest.mark.parametrize(("value", "oxygen", "points"), SCALE_2)
def test_scale_2_scores_as_the_rcp_chart(value: float, oxygen: bool, points: int) -> None:
    pulse = ManualObservation(1, "heart_rate", T0, 120)  # 2
    temperature = ManualObservation(1, "body_temperature", T0, 38.5)  # 1
    overrides = {**HYPERCAPNIC, "news2": {"amber_at": 1}}  # every score alerts: read it
    found = hits(("copd",), overrides, pulse, temperature, spo2(value, 1, oxygen))
    news2 = [h for h in found if h.rule_id == "news2"][-1]
    assert news2.details["points"]["spo2"] == points
    assert news2.details["spo2_scale"] == 2
    assert news2.value == 3 + points + (2 if oxygen else 0)


def test_the_low_limit_follows_the_target_and_oxygen_above_it_alerts() -> None:
    found = hits(("copd",), HYPERCAPNIC, spo2(87.9), spo2(96, 5, oxygen=True))
    assert ("threshold:spo2:low", Priority.RED) in {(h.rule_id, h.priority) for h in found}
    above = [h for h in found if h.rule_id == "spo2_target:above_on_oxygen"]
    assert [h.priority for h in above] == [Priority.AMBER]


def test_heart_failure_and_copd_take_the_target_not_the_scale_1_limit() -> None:
    rules = effective_rules(["copd", "heart_failure"], HYPERCAPNIC)
    low = rules["threshold:spo2:low"]
    assert isinstance(low.rule, ThresholdRuleConfig)
    assert (low.rule.limit, low.rule.inclusive) == (88, False)  # was ≤ 91 (heart failure)
    assert low.origin == "spo2_target"
    assert rules["news2"].rule.spo2_scale == 2
    assert hits(("copd", "heart_failure"), HYPERCAPNIC, spo2(90)) == []


def test_a_limit_set_by_hand_inside_the_target_is_refused() -> None:
    with pytest.raises(ValidationError, match="alarms inside the patient's recorded"):
        effective_rules(["copd"], {**HYPERCAPNIC, "threshold:spo2:low": {"limit": 91}})
    own = effective_rules(["copd"], {**HYPERCAPNIC, "threshold:spo2:low": {"limit": 86}})
    assert own["threshold:spo2:low"].rule.limit == 86  # below the target: the clinician's


def test_the_scale_is_never_set_on_news2_directly() -> None:
    with pytest.raises(ValidationError, match="recorded with the patient's SpO2 target"):
        effective_rules(["copd"], {"news2": {"spo2_scale": 2}})
