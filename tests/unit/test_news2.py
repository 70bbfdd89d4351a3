"""NEWS2 against the published chart (RCP 2017 chart 1, as tabled in docs/references.md).

Every expected value below is typed from the chart, not computed from the code: both
sides of every band boundary of every row, the rounding rule on both sides, the response
bands, partial scores, and the calculator's input rules.
"""

from __future__ import annotations

import dataclasses
import math
from decimal import MAX_PREC, ROUND_HALF_UP, Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.news2 import (
    Band,
    VitalSet,
    _chart_value,
    band_for,
    parse_calculator_line,
    score_news2,
    score_to_json,
)
from homeward.domain import Consciousness
from homeward.errors import ValidationError

ALL = (
    "respiratory_rate",
    "spo2",
    "on_oxygen",
    "systolic_bp",
    "heart_rate",
    "consciousness",
    "body_temperature",
)


def points(vitals: VitalSet, parameter: str) -> int:
    return score_news2(vitals).points[parameter]


# --- one row of the chart at a time: (value, points) ---------------------------------

RESPIRATION = [(0, 3), (4, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0)]
RESPIRATION += [(21, 2), (24, 2), (25, 3), (40, 3)]


@pytest.mark.parametrize(("rate", "expected"), RESPIRATION)
def test_respiration_rate(rate: float, expected: int) -> None:
    assert points(VitalSet(respiratory_rate=rate), "respiratory_rate") == expected


SPO2_SCALE_1 = [(0, 3), (70, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]


@pytest.mark.parametrize(("spo2", "expected"), SPO2_SCALE_1)
@pytest.mark.parametrize("on_oxygen", [False, True, None])
def test_spo2_scale_1_does_not_depend_on_oxygen(
    spo2: float, expected: int, on_oxygen: bool | None
) -> None:
    assert points(VitalSet(spo2=spo2, on_oxygen=on_oxygen), "spo2") == expected
    assert points(VitalSet(spo2=spo2, spo2_scale=1, on_oxygen=on_oxygen), "spo2") == expected


SPO2_SCALE_2_ON_AIR = [(70, 3), (83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0)]
SPO2_SCALE_2_ON_AIR += [(93, 0), (94, 0), (95, 0), (96, 0), (97, 0), (100, 0)]


@pytest.mark.parametrize(("spo2", "expected"), SPO2_SCALE_2_ON_AIR)
def test_spo2_scale_2_on_air(spo2: float, expected: int) -> None:
    assert points(VitalSet(spo2=spo2, spo2_scale=2, on_oxygen=False), "spo2") == expected


SPO2_SCALE_2_ON_OXYGEN = [(70, 3), (83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0)]
SPO2_SCALE_2_ON_OXYGEN += [(92, 0), (93, 1), (94, 1), (95, 2), (96, 2), (97, 3), (100, 3)]


@pytest.mark.parametrize(("spo2", "expected"), SPO2_SCALE_2_ON_OXYGEN)
def test_spo2_scale_2_on_oxygen(spo2: float, expected: int) -> None:
    assert points(VitalSet(spo2=spo2, spo2_scale=2, on_oxygen=True), "spo2") == expected


@pytest.mark.parametrize(("spo2", "expected"), [(87, 1), (88, 0), (93, 0), (97, 0)])
def test_spo2_scale_2_with_oxygen_unknown_scores_as_air_and_is_partial(
    spo2: float, expected: int
) -> None:
    result = score_news2(VitalSet(spo2=spo2, spo2_scale=2))
    assert result.points["spo2"] == expected
    assert result.partial
    assert "on_oxygen" in result.missing


@pytest.mark.parametrize(("on_oxygen", "expected"), [(False, 0), (True, 2)])
@pytest.mark.parametrize("scale", [1, 2])
def test_air_or_oxygen_scores_on_both_scales(on_oxygen: bool, expected: int, scale: int) -> None:
    assert points(VitalSet(on_oxygen=on_oxygen, spo2_scale=scale), "on_oxygen") == expected


SYSTOLIC = [(40, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0)]
SYSTOLIC += [(220, 3), (280, 3)]


@pytest.mark.parametrize(("systolic", "expected"), SYSTOLIC)
def test_systolic_bp(systolic: float, expected: int) -> None:
    assert points(VitalSet(systolic_bp=systolic), "systolic_bp") == expected


PULSE = [(20, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2)]
PULSE += [(130, 2), (131, 3), (200, 3)]


@pytest.mark.parametrize(("pulse", "expected"), PULSE)
def test_pulse(pulse: float, expected: int) -> None:
    assert points(VitalSet(heart_rate=pulse), "heart_rate") == expected


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (Consciousness.ALERT, 0),
        (Consciousness.NEW_CONFUSION, 3),
        (Consciousness.VOICE, 3),
        (Consciousness.PAIN, 3),
        (Consciousness.UNRESPONSIVE, 3),
    ],
)
def test_consciousness_acvpu(level: Consciousness, expected: int) -> None:
    assert points(VitalSet(consciousness=level), "consciousness") == expected


TEMPERATURE = [(30.0, 3), (34.9, 3), (35.0, 3), (35.1, 1), (35.5, 1), (36.0, 1), (36.1, 0)]
TEMPERATURE += [(37.0, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2), (42.0, 2)]


@pytest.mark.parametrize(("celsius", "expected"), TEMPERATURE)
def test_temperature(celsius: float, expected: int) -> None:
    assert points(VitalSet(body_temperature=celsius), "body_temperature") == expected


# --- the rounding rule: temperature to 0.1, the rest to 1, half up ---------------------

ROUNDING = [
    # temperature, one decimal: x.x4 goes down, x.x5 goes up
    ("body_temperature", 35.04, 3),
    ("body_temperature", 35.05, 1),
    ("body_temperature", 36.04, 1),
    ("body_temperature", 36.05, 0),
    ("body_temperature", 38.04, 0),
    ("body_temperature", 38.05, 1),
    ("body_temperature", 39.04, 1),
    ("body_temperature", 39.05, 2),
    # whole numbers: x.4 goes down, x.5 goes up
    ("respiratory_rate", 8.4, 3),
    ("respiratory_rate", 8.5, 1),
    ("respiratory_rate", 11.4, 1),
    ("respiratory_rate", 11.5, 0),
    ("respiratory_rate", 20.4, 0),
    ("respiratory_rate", 20.5, 2),
    ("respiratory_rate", 24.4, 2),
    ("respiratory_rate", 24.5, 3),
    ("spo2", 91.4, 3),
    ("spo2", 91.5, 2),
    ("spo2", 95.4, 1),
    ("spo2", 95.5, 0),
    ("systolic_bp", 90.4, 3),
    ("systolic_bp", 90.5, 2),
    ("systolic_bp", 110.4, 1),
    ("systolic_bp", 110.5, 0),
    ("systolic_bp", 219.4, 0),
    ("systolic_bp", 219.5, 3),
    ("heart_rate", 40.4, 3),
    ("heart_rate", 40.5, 1),
    ("heart_rate", 90.4, 0),
    ("heart_rate", 90.5, 1),
    ("heart_rate", 130.4, 2),
    ("heart_rate", 130.5, 3),
]


@pytest.mark.parametrize(("parameter", "value", "expected"), ROUNDING)
def test_rounding_rule_on_both_sides(parameter: str, value: float, expected: int) -> None:
    vitals = VitalSet(**{parameter: value})  # type: ignore[arg-type]
    assert points(vitals, parameter) == expected


@pytest.mark.parametrize(("spo2", "expected"), [(92.4, 0), (92.5, 1), (96.4, 2), (96.5, 3)])
def test_rounding_rule_on_scale_2_with_oxygen(spo2: float, expected: int) -> None:
    assert points(VitalSet(spo2=spo2, spo2_scale=2, on_oxygen=True), "spo2") == expected


def test_rounding_uses_the_value_as_written_not_its_binary_approximation() -> None:
    # 35.05 is stored as 35.04999…; the rule applies to the value as written.
    assert Decimal.from_float(35.05) < Decimal("35.05")
    assert points(VitalSet(body_temperature=35.05), "body_temperature") == 1


# --- aggregate and response bands -----------------------------------------------------

NORMAL = VitalSet(
    respiratory_rate=16,
    spo2=97,
    spo2_scale=1,
    on_oxygen=False,
    systolic_bp=125,
    heart_rate=70,
    consciousness=Consciousness.ALERT,
    body_temperature=36.8,
)


def with_(**changes: object) -> VitalSet:
    return dataclasses.replace(NORMAL, **changes)  # type: ignore[arg-type]


AGGREGATES = [
    pytest.param(NORMAL, 0, Band.LOW, False, id="0 routine, reported as low"),
    pytest.param(with_(heart_rate=95), 1, Band.LOW, False, id="1"),
    pytest.param(with_(respiratory_rate=21, heart_rate=111), 4, Band.LOW, False, id="4 = 2+2"),
    pytest.param(
        with_(consciousness=Consciousness.VOICE), 3, Band.LOW_MEDIUM, True, id="3 = single 3"
    ),
    pytest.param(
        with_(systolic_bp=90, heart_rate=95), 4, Band.LOW_MEDIUM, True, id="4 = 3+1, single 3"
    ),
    pytest.param(
        with_(on_oxygen=True, spo2=93, body_temperature=38.5),
        5,
        Band.MEDIUM,
        False,
        id="5 = 2+2+1",
    ),
    pytest.param(
        with_(respiratory_rate=25, on_oxygen=True), 5, Band.MEDIUM, True, id="5 = 3+2, medium"
    ),
    pytest.param(
        with_(respiratory_rate=22, spo2=94, systolic_bp=105, heart_rate=95, body_temperature=38.2),
        6,
        Band.MEDIUM,
        False,
        id="6 = 2+1+1+1+1",
    ),
    pytest.param(
        with_(respiratory_rate=22, spo2=94, on_oxygen=True, systolic_bp=105, heart_rate=95),
        7,
        Band.HIGH,
        False,
        id="7 = 2+1+2+1+1",
    ),
    pytest.param(
        with_(
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
        id="19 = scale 1 at its worst, 3+3+2+3+3+3+2",
    ),
]


@pytest.mark.parametrize(("vitals", "score", "band", "single"), AGGREGATES)
def test_aggregate_and_band(vitals: VitalSet, score: int, band: Band, single: bool) -> None:
    result = score_news2(vitals)
    assert (result.score, result.band, result.single_parameter_3) == (score, band, single)
    assert not result.partial
    assert result.missing == ()


def test_full_set_maximum_is_20() -> None:
    worst = VitalSet(
        respiratory_rate=30,  # 3
        spo2=98,  # 3: scale 2, ≥ 97 on oxygen
        spo2_scale=2,
        on_oxygen=True,  # 2
        systolic_bp=230,  # 3
        heart_rate=30,  # 3
        consciousness=Consciousness.PAIN,  # 3
        body_temperature=34.0,  # 3
    )
    result = score_news2(worst)
    assert (result.score, result.band, result.single_parameter_3) == (20, Band.HIGH, True)
    assert dict(result.points) == {
        "respiratory_rate": 3,
        "spo2": 3,
        "on_oxygen": 2,
        "systolic_bp": 3,
        "heart_rate": 3,
        "consciousness": 3,
        "body_temperature": 3,
    }


# Response bands typed from the chart: ≥ 7 high; 5–6 medium; a single 3 below 5 is
# low-medium; otherwise low.
BANDS = [(s, False, Band.LOW) for s in range(5)] + [(s, True, Band.LOW_MEDIUM) for s in (3, 4)]
BANDS += [(5, False, Band.MEDIUM), (6, False, Band.MEDIUM), (5, True, Band.MEDIUM)]
BANDS += [(6, True, Band.MEDIUM), (7, False, Band.HIGH), (7, True, Band.HIGH)]
BANDS += [(20, True, Band.HIGH)]


@pytest.mark.parametrize(("score", "single", "band"), BANDS)
def test_band_table(score: int, single: bool, band: Band) -> None:
    assert band_for(score, single) is band


def test_band_values_are_the_published_strings() -> None:
    assert [b.value for b in Band] == ["low", "low-medium", "medium", "high"]


# --- partial scores: missing is never 0 -----------------------------------------------


def test_missing_parameters_are_listed_in_a_fixed_order_never_scored() -> None:
    result = score_news2(VitalSet(spo2=90, heart_rate=120))
    assert (result.score, result.partial) == (3 + 2, True)
    assert dict(result.points) == {"spo2": 3, "heart_rate": 2}
    assert result.missing == (
        "respiratory_rate",
        "on_oxygen",
        "systolic_bp",
        "consciousness",
        "body_temperature",
    )


def test_nothing_measured_is_an_empty_partial_score() -> None:
    result = score_news2(VitalSet())
    assert (result.score, result.band, result.partial) == (0, Band.LOW, True)
    assert result.missing == ALL
    assert dict(result.points) == {}


def test_a_partial_score_keeps_the_single_parameter_trigger() -> None:
    result = score_news2(VitalSet(heart_rate=35))
    assert (result.score, result.band, result.single_parameter_3) == (3, Band.LOW_MEDIUM, True)
    assert result.partial


@pytest.mark.parametrize("missing", ALL)
def test_each_parameter_alone_can_be_missing(missing: str) -> None:
    result = score_news2(with_(**{missing: None}))
    assert result.partial
    assert result.missing == (missing,)
    assert missing not in result.points


def test_score_to_json() -> None:
    out = score_to_json(score_news2(VitalSet(spo2=95, spo2_scale=2, on_oxygen=True)))
    assert out == {
        "score": 4,
        "band": "low",
        "single_parameter_3": False,
        "partial": True,
        "missing": [
            "respiratory_rate",
            "systolic_bp",
            "heart_rate",
            "consciousness",
            "body_temperature",
        ],
        "points": {"spo2": 2, "on_oxygen": 2},
    }


# --- refused values -------------------------------------------------------------------

NUMERIC = ("respiratory_rate", "spo2", "systolic_bp", "heart_rate", "body_temperature")


@pytest.mark.parametrize("parameter", NUMERIC)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0, -0.5])
def test_non_finite_or_negative_values_are_refused(parameter: str, bad: float) -> None:
    with pytest.raises(ValidationError, match=parameter):
        score_news2(VitalSet(**{parameter: bad}))  # type: ignore[arg-type]


def test_saturation_above_100_is_refused() -> None:
    with pytest.raises(ValidationError, match="spo2"):
        score_news2(VitalSet(spo2=101))


@pytest.mark.parametrize("scale", [0, 3])
def test_unknown_spo2_scale_is_refused(scale: int) -> None:
    with pytest.raises(ValidationError, match="spo2_scale"):
        score_news2(VitalSet(spo2=95, spo2_scale=scale))


def test_a_very_large_value_scores_instead_of_crashing() -> None:
    assert points(VitalSet(heart_rate=1e300), "heart_rate") == 3


# --- the calculator's input -----------------------------------------------------------


def test_calculator_line_with_every_key() -> None:
    line = {
        "respiratory_rate": 18,
        "spo2": 93.5,
        "spo2_scale": 2,
        "on_oxygen": True,
        "systolic_bp": 120,
        "heart_rate": 88,
        "consciousness": "C",
        "body_temperature": 37.2,
    }
    assert parse_calculator_line(line) == VitalSet(
        respiratory_rate=18,
        spo2=93.5,
        spo2_scale=2,
        on_oxygen=True,
        systolic_bp=120,
        heart_rate=88,
        consciousness=Consciousness.NEW_CONFUSION,
        body_temperature=37.2,
    )


def test_calculator_line_keys_may_be_missing_or_null() -> None:
    assert parse_calculator_line({}) == VitalSet()
    assert parse_calculator_line(dict.fromkeys((*ALL, "spo2_scale"))) == VitalSet()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ([], "JSON object"),
        (42, "JSON object"),
        ({"pulse": 80}, "unknown key pulse"),
        ({"heart_rate": 80, "temp": 37}, "unknown key temp"),
        ({"heart_rate": "80"}, "heart_rate must be a number"),
        ({"heart_rate": True}, "heart_rate must be a number"),
        ({"spo2": False}, "spo2 must be a number"),
        ({"body_temperature": [37]}, "body_temperature must be a number"),
        ({"respiratory_rate": {"value": 12}}, "respiratory_rate must be a number"),
        ({"spo2_scale": 3}, "spo2_scale"),
        ({"spo2_scale": True}, "spo2_scale"),
        ({"spo2_scale": "2"}, "spo2_scale"),
        ({"spo2_scale": 2.0}, "spo2_scale"),
        ({"on_oxygen": "yes"}, "on_oxygen"),
        ({"on_oxygen": 1}, "on_oxygen"),
        ({"consciousness": "X"}, "consciousness"),
        ({"consciousness": "a"}, "consciousness"),
        ({"consciousness": 0}, "consciousness"),
    ],
)
def test_calculator_refuses_bad_lines(line: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_calculator_line(line)


# --- properties -----------------------------------------------------------------------


def maybe(strategy: st.SearchStrategy[float]) -> st.SearchStrategy[float | None]:
    return st.one_of(st.none(), strategy)


VITAL_SETS = st.builds(
    VitalSet,
    respiratory_rate=maybe(st.floats(0, 80)),
    spo2=maybe(st.floats(0, 100)),
    spo2_scale=st.sampled_from([1, 2]),
    on_oxygen=st.one_of(st.none(), st.booleans()),
    systolic_bp=maybe(st.floats(0, 300)),
    heart_rate=maybe(st.floats(0, 300)),
    consciousness=st.one_of(st.none(), st.sampled_from(list(Consciousness))),
    body_temperature=maybe(st.floats(20, 45)),
)


@given(VITAL_SETS)
def test_score_is_the_sum_of_points_within_0_to_20(vitals: VitalSet) -> None:
    result = score_news2(vitals)
    assert result.score == sum(result.points.values())
    assert 0 <= result.score <= 20
    assert result.partial == bool(result.missing)
    assert set(result.points).isdisjoint(result.missing)
    assert set(result.points) | set(result.missing) == set(ALL)
    assert result.single_parameter_3 == (3 in result.points.values())


@given(VITAL_SETS, st.sets(st.sampled_from(ALL)))
def test_a_partial_score_is_never_more_than_the_full_one(
    vitals: VitalSet, dropped: set[str]
) -> None:
    partial = dataclasses.replace(vitals, **dict.fromkeys(dropped))  # type: ignore[arg-type]
    assert score_news2(partial).score <= score_news2(vitals).score


@given(
    st.one_of(
        st.floats(min_value=0, allow_nan=False, allow_infinity=False),
        st.integers(min_value=0, max_value=10**30),
        st.integers(0, 400).map(lambda n: n / 2),  # every half: the rounding's edge
    )
)
def test_whole_number_charting_rounds_as_the_written_decimal(value: float) -> None:
    """Charting to whole numbers skips Decimal; it must round half up exactly as the
    decimal the value is written as (str), the rule the published charts use."""
    written = Decimal(value) if isinstance(value, int) else Decimal(str(value))
    expected = written.quantize(Decimal(1), context=Context(prec=MAX_PREC, rounding=ROUND_HALF_UP))
    assert _chart_value("pulse", value) == expected
