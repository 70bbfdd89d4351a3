"""NEWS2 against RCP 2017 chart 1 (clinical.md), typed from the chart, both sides of
every boundary of every parameter."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from alerts.news2 import (
    Band,
    VitalSet,
    parse_calculator_line,
    score_news2,
)
from homeward.cli.news2_cmd import news2
from homeward.domain import Consciousness
from homeward.errors import ValidationError

# (value, points) pairs straight from the chart.
RESPIRATION = [
    (0, 3),
    (8, 3),
    (9, 1),
    (11, 1),
    (12, 0),
    (20, 0),
    (21, 2),
    (24, 2),
    (25, 3),
    (60, 3),
]
SPO2_SCALE_1 = [(50, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SPO2_SCALE_2_AIR = [
    (70, 3),
    (83, 3),
    (84, 2),
    (85, 2),
    (86, 1),
    (87, 1),
    (88, 0),
    (92, 0),
    (93, 0),
    (97, 0),
    (100, 0),
]
SPO2_SCALE_2_OXYGEN = [
    (83, 3),
    (84, 2),
    (85, 2),
    (86, 1),
    (87, 1),
    (88, 0),
    (92, 0),
    (93, 1),
    (94, 1),
    (95, 2),
    (96, 2),
    (97, 3),
    (100, 3),
]
SYSTOLIC = [
    (60, 3),
    (90, 3),
    (91, 2),
    (100, 2),
    (101, 1),
    (110, 1),
    (111, 0),
    (219, 0),
    (220, 3),
    (260, 3),
]
PULSE = [
    (30, 3),
    (40, 3),
    (41, 1),
    (50, 1),
    (51, 0),
    (90, 0),
    (91, 1),
    (110, 1),
    (111, 2),
    (130, 2),
    (131, 3),
    (180, 3),
]
TEMPERATURE = [
    (33.0, 3),
    (35.0, 3),
    (35.1, 1),
    (36.0, 1),
    (36.1, 0),
    (38.0, 0),
    (38.1, 1),
    (39.0, 1),
    (39.1, 2),
    (41.0, 2),
]


def points(vitals: VitalSet, parameter: str) -> int:
    return score_news2(vitals).points[parameter]


@pytest.mark.parametrize(("value", "expected"), RESPIRATION)
def test_respiration_rate(value: float, expected: int) -> None:
    assert points(VitalSet(respiratory_rate=value), "respiratory_rate") == expected


@pytest.mark.parametrize(("value", "expected"), SPO2_SCALE_1)
def test_spo2_scale_1(value: float, expected: int) -> None:
    for oxygen in (False, True, None):  # scale 1 does not depend on oxygen
        assert points(VitalSet(spo2=value, on_oxygen=oxygen), "spo2") == expected


@pytest.mark.parametrize(("value", "expected"), SPO2_SCALE_2_AIR)
def test_spo2_scale_2_on_air(value: float, expected: int) -> None:
    assert points(VitalSet(spo2=value, spo2_scale=2, on_oxygen=False), "spo2") == expected


@pytest.mark.parametrize(("value", "expected"), SPO2_SCALE_2_OXYGEN)
def test_spo2_scale_2_on_oxygen(value: float, expected: int) -> None:
    assert points(VitalSet(spo2=value, spo2_scale=2, on_oxygen=True), "spo2") == expected


def test_air_or_oxygen() -> None:
    assert points(VitalSet(on_oxygen=True), "on_oxygen") == 2
    assert points(VitalSet(on_oxygen=False), "on_oxygen") == 0


@pytest.mark.parametrize(("value", "expected"), SYSTOLIC)
def test_systolic(value: float, expected: int) -> None:
    assert points(VitalSet(systolic_bp=value), "systolic_bp") == expected


@pytest.mark.parametrize(("value", "expected"), PULSE)
def test_pulse(value: float, expected: int) -> None:
    assert points(VitalSet(heart_rate=value), "heart_rate") == expected


@pytest.mark.parametrize(
    ("level", "expected"),
    [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)],
)
def test_consciousness_acvpu(level: str, expected: int) -> None:
    assert points(VitalSet(consciousness=Consciousness(level)), "consciousness") == expected


@pytest.mark.parametrize(("value", "expected"), TEMPERATURE)
def test_temperature(value: float, expected: int) -> None:
    assert points(VitalSet(body_temperature=value), "body_temperature") == expected


@pytest.mark.parametrize(
    ("vitals", "parameter", "expected"),
    [  # the rounding rule (half up), on both sides
        (VitalSet(body_temperature=35.04), "body_temperature", 3),
        (VitalSet(body_temperature=35.05), "body_temperature", 1),
        (VitalSet(body_temperature=38.04), "body_temperature", 0),
        (VitalSet(body_temperature=38.05), "body_temperature", 1),
        (VitalSet(respiratory_rate=20.4), "respiratory_rate", 0),
        (VitalSet(respiratory_rate=20.5), "respiratory_rate", 2),
        (VitalSet(heart_rate=90.5), "heart_rate", 1),
        (VitalSet(systolic_bp=90.4), "systolic_bp", 3),
        (VitalSet(spo2=95.5), "spo2", 0),
    ],
)
def test_rounding_rule(vitals: VitalSet, parameter: str, expected: int) -> None:
    assert points(vitals, parameter) == expected


FULL_NORMAL = VitalSet(
    respiratory_rate=16,
    spo2=97,
    on_oxygen=False,
    systolic_bp=125,
    heart_rate=70,
    consciousness=Consciousness.ALERT,
    body_temperature=36.8,
)


@pytest.mark.parametrize(
    ("vitals", "score", "band", "single"),
    [
        (FULL_NORMAL, 0, Band.LOW, False),
        # 4 = RR 21 (2) + pulse 111 (2): still low
        (
            VitalSet(
                respiratory_rate=21,
                spo2=97,
                on_oxygen=False,
                systolic_bp=125,
                heart_rate=111,
                consciousness=Consciousness.ALERT,
                body_temperature=36.8,
            ),
            4,
            Band.LOW,
            False,
        ),
        # 3 in one parameter (new confusion) with an aggregate of 3: low-medium
        (
            VitalSet(
                respiratory_rate=16,
                spo2=97,
                on_oxygen=False,
                systolic_bp=125,
                heart_rate=70,
                consciousness=Consciousness.NEW_CONFUSION,
                body_temperature=36.8,
            ),
            3,
            Band.LOW_MEDIUM,
            True,
        ),
        # 5 = oxygen (2) + SpO2 93 scale 1 (2) + temperature 38.5 (1): medium
        (
            VitalSet(
                respiratory_rate=16,
                spo2=93,
                on_oxygen=True,
                systolic_bp=125,
                heart_rate=70,
                consciousness=Consciousness.ALERT,
                body_temperature=38.5,
            ),
            5,
            Band.MEDIUM,
            False,
        ),
        # 6: medium
        (
            VitalSet(
                respiratory_rate=22,
                spo2=94,
                on_oxygen=False,
                systolic_bp=105,
                heart_rate=95,
                consciousness=Consciousness.ALERT,
                body_temperature=38.2,
            ),
            6,
            Band.MEDIUM,
            False,
        ),
        # 7: high
        (
            VitalSet(
                respiratory_rate=22,
                spo2=94,
                on_oxygen=True,
                systolic_bp=105,
                heart_rate=95,
                consciousness=Consciousness.ALERT,
                body_temperature=37,
            ),
            7,
            Band.HIGH,
            False,
        ),
        # scale 1 at its worst with a fever: 3+3+2+3+3+3+2 = 19
        (
            VitalSet(
                respiratory_rate=30,
                spo2=85,
                on_oxygen=True,
                systolic_bp=80,
                heart_rate=140,
                consciousness=Consciousness.UNRESPONSIVE,
                body_temperature=40,
            ),
            19,
            Band.HIGH,
            True,
        ),
        # the maximum, 20: scale 2 on oxygen at ≥ 97, temperature ≤ 35 — 3+3+2+3+3+3+3
        (
            VitalSet(
                respiratory_rate=30,
                spo2=98,
                spo2_scale=2,
                on_oxygen=True,
                systolic_bp=230,
                heart_rate=30,
                consciousness=Consciousness.PAIN,
                body_temperature=34,
            ),
            20,
            Band.HIGH,
            True,
        ),
    ],
)
def test_aggregate_bands(vitals: VitalSet, score: int, band: Band, single: bool) -> None:
    result = score_news2(vitals)
    assert (result.score, result.band, result.single_parameter_3) == (score, band, single)
    assert not result.partial


def test_missing_parameters_are_partial_never_zero() -> None:
    result = score_news2(VitalSet(spo2=90, heart_rate=120))
    assert result.score == 3 + 2
    assert result.partial
    assert result.missing == (
        "respiratory_rate",
        "on_oxygen",
        "systolic_bp",
        "consciousness",
        "body_temperature",
    )
    assert set(result.points) == {"spo2", "heart_rate"}
    assert score_news2(VitalSet()).missing == (
        "respiratory_rate",
        "spo2",
        "on_oxygen",
        "systolic_bp",
        "heart_rate",
        "consciousness",
        "body_temperature",
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_non_finite_or_negative_values_are_refused(bad: float) -> None:
    with pytest.raises(ValidationError):
        score_news2(VitalSet(heart_rate=bad))


@pytest.mark.parametrize(
    "line",
    [
        [],
        {"pulse": 80},
        {"heart_rate": "80"},
        {"heart_rate": True},
        {"spo2_scale": 3},
        {"on_oxygen": "yes"},
        {"consciousness": "X"},
    ],
)
def test_calculator_refuses_bad_lines(line: object) -> None:
    with pytest.raises(ValidationError):
        parse_calculator_line(line)


def test_calculator_command() -> None:
    lines = (
        '{"respiratory_rate": 22, "spo2": 91, "on_oxygen": false, "systolic_bp": 105,'
        ' "heart_rate": 115, "consciousness": "A", "body_temperature": 38.5}\n'
        "\n"
        '{"spo2": 95, "spo2_scale": 2, "on_oxygen": true}\n'
        "not json\n"
    )
    result = CliRunner().invoke(news2, input=lines)
    assert result.exit_code == 1
    first, second = result.stdout.splitlines()
    assert first.startswith('{"score":9,"band":"high","single_parameter_3":true,"partial":false')
    assert '"points":{"spo2":2,"on_oxygen":2}' in second
    assert "line 4" in result.stderr


VALUES = st.one_of(st.none(), st.floats(min_value=0, max_value=300))


@given(
    VALUES,
    VALUES,
    st.sampled_from([1, 2]),
    st.one_of(st.none(), st.booleans()),
    VALUES,
    VALUES,
    st.one_of(st.none(), st.sampled_from(list(Consciousness))),
    st.one_of(st.none(), st.floats(min_value=25, max_value=45)),
)
def test_properties(
    rr: float | None,
    spo2: float | None,
    scale: int,
    oxygen: bool | None,
    sbp: float | None,
    hr: float | None,
    acvpu: Consciousness | None,
    temp: float | None,
) -> None:
    result = score_news2(
        VitalSet(rr, spo2 if spo2 is None else min(spo2, 100), scale, oxygen, sbp, hr, acvpu, temp)
    )
    assert result.score == sum(result.points.values())
    assert 0 <= result.score <= 20
    assert result.partial == bool(result.missing)
    assert set(result.points) | set(result.missing) == {
        "respiratory_rate",
        "spo2",
        "on_oxygen",
        "systolic_bp",
        "heart_rate",
        "consciousness",
        "body_temperature",
    }
