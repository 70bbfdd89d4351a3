"""The backtest runs the real rule engine over stored readings (alerts/backtest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.backtest import WouldRaise, backtest
from alerts.engine import ManualObservation

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
STAGE2 = "threshold:systolic_bp:stage2"


def _readings(values: list[float], *, late: bool = False) -> list[ManualObservation]:
    return [
        ManualObservation(1, "systolic_bp", T0 + timedelta(days=i), v, late=late)
        for i, v in enumerate(values)
    ]


def _stage2(raised: list[WouldRaise]) -> int:
    return sum(1 for a in raised if a.rule_id == STAGE2)


def test_an_alert_per_episode_and_none_above_a_raised_limit() -> None:
    readings = _readings([155, 157, 130, 158, 128])  # two episodes above 150
    default = backtest(readings, patient_id=1, conditions=("hypertension",), overrides={})
    raised = backtest(
        readings,
        patient_id=1,
        conditions=("hypertension",),
        overrides={STAGE2: {"limit": 160.0}},
    )
    assert _stage2(default) == 2
    assert [(a.measured_at, a.value) for a in default if a.rule_id == STAGE2] == [
        (T0, 155.0),
        (T0 + timedelta(days=3), 158.0),
    ]
    assert _stage2(raised) == 0


def test_late_readings_raise_no_alert() -> None:
    raised = backtest(
        _readings([190, 195], late=True), patient_id=1, conditions=("hypertension",), overrides={}
    )
    assert raised == []
