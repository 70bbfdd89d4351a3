"""Metric catalogue and units, against docs/payload.md and docs/references.md typed out by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.units import CONVERSIONS, classify, to_canonical
from homeward.errors import UnitError
from homeward.metrics import CATALOGUE

# docs/payload.md's catalogue, typed from the document — not read from the code.
PUBLISHED = {
    "heart_rate": ("8867-4", "/min"),
    "respiratory_rate": ("9279-1", "/min"),
    "spo2": ("59408-5", "%"),
    "systolic_bp": ("8480-6", "mm[Hg]"),
    "diastolic_bp": ("8462-4", "mm[Hg]"),
    "body_temperature": ("8310-5", "Cel"),
    "body_weight": ("29463-7", "kg"),
    "blood_glucose": ("15074-8", "mmol/L"),
}


def test_catalogue_is_exactly_the_contract() -> None:
    assert set(CATALOGUE) == set(PUBLISHED)


@pytest.mark.parametrize(("metric", "loinc", "unit"), [(m, *v) for m, v in PUBLISHED.items()])
def test_each_entry_has_its_loinc_code_and_canonical_unit(
    metric: str, loinc: str, unit: str
) -> None:
    spec = CATALOGUE[metric]
    assert spec.loinc == loinc
    assert spec.unit == unit
    assert spec.unit in spec.accepted_units
    low, high = spec.possible
    p_low, p_high = spec.plausible
    assert low <= p_low < p_high <= high
    assert to_canonical(metric, 42.0, unit) == 42.0


def test_alternative_loinc_codes_from_clinical_md() -> None:
    assert "2708-6" in CATALOGUE["spo2"].alt_loinc
    assert {"14743-9", "2339-0"} <= set(CATALOGUE["blood_glucose"].alt_loinc)


# Hand-computed expectations for every conversion.
CONVERSION_CASES = [
    ("heart_rate", 72, "{beats}/min", 72.0),
    ("respiratory_rate", 16, "{breaths}/min", 16.0),
    ("systolic_bp", 16, "kPa", 120.00992),
    ("diastolic_bp", 10.6658, "kPa", 80.0),
    ("body_temperature", 212, "[degF]", 100.0),
    ("body_temperature", 98.6, "[degF]", 37.0),
    ("body_temperature", 32, "[degF]", 0.0),
    ("body_weight", 80_000, "g", 80.0),
    ("body_weight", 22.0462, "[lb_av]", 10.0),
    ("body_weight", 176.37, "[lb_av]", 80.0),
    ("blood_glucose", 180, "mg/dL", 10.0),
    ("blood_glucose", 72, "mg/dL", 4.0),
    ("blood_glucose", 54, "mg/dL", 3.0),
]


@pytest.mark.parametrize(("metric", "value", "unit", "expected"), CONVERSION_CASES)
def test_every_conversion(metric: str, value: float, unit: str, expected: float) -> None:
    assert to_canonical(metric, value, unit) == pytest.approx(expected, abs=2e-3)


def test_every_conversion_is_exercised() -> None:
    assert {(unit, CATALOGUE[m].unit) for m, _, unit, _ in CONVERSION_CASES} == set(CONVERSIONS)


@pytest.mark.parametrize(
    ("metric", "unit"),
    [
        ("systolic_bp", "mmHg"),  # not the UCUM code
        ("body_weight", "lbs"),
        ("body_weight", "kg "),
        ("body_temperature", "F"),
        ("body_temperature", "degC"),
        ("blood_glucose", "mg/dl"),  # UCUM is case-sensitive
        ("spo2", "mmol/L"),  # a real unit, for another metric
        ("heart_rate", "bpm"),
    ],
)
def test_unknown_units_are_rejected_not_guessed(metric: str, unit: str) -> None:
    with pytest.raises(UnitError, match="not accepted"):
        to_canonical(metric, 1.0, unit)


def test_unknown_metric() -> None:
    with pytest.raises(UnitError, match="unknown metric"):
        to_canonical("ketones", 1.0, "mmol/L")


def _boundaries() -> list[tuple[str, float, str]]:
    cases = []
    for name, spec in CATALOGUE.items():
        step = 10.0 ** -(spec.decimals + 1)
        low, high = spec.possible
        p_low, p_high = spec.plausible
        cases += [
            (name, low - step, "impossible"),
            (name, low, "implausible" if low < p_low else "ok"),
            (name, p_low - step, "implausible"),
            (name, p_low, "ok"),
            (name, p_high, "ok"),
            (name, p_high + step, "implausible" if p_high < high else "impossible"),
            (name, high, "implausible" if p_high < high else "ok"),
            (name, high + step, "impossible"),
        ]
    return cases


@pytest.mark.parametrize(("metric", "value", "verdict"), _boundaries())
def test_plausibility_boundaries_on_both_sides(metric: str, value: float, verdict: str) -> None:
    assert classify(metric, value) == verdict


@pytest.mark.parametrize(
    ("metric", "value", "verdict"),
    [  # spot checks typed from the ranges in docs/payload.md
        ("spo2", 100, "ok"),
        ("spo2", 100.1, "impossible"),
        ("spo2", 49, "implausible"),
        ("heart_rate", 0, "impossible"),
        ("heart_rate", 230, "implausible"),
        ("body_temperature", 46, "impossible"),
        ("blood_glucose", 0.05, "impossible"),
        ("blood_glucose", 35, "implausible"),
    ],
)
def test_published_ranges(metric: str, value: float, verdict: str) -> None:
    assert classify(metric, value) == verdict


@given(st.sampled_from(sorted(CONVERSIONS)), st.floats(min_value=-1e6, max_value=1e6))
def test_conversions_are_finite_and_monotonic(pair: tuple[str, str], value: float) -> None:
    unit, canonical = pair
    metric = next(
        m for m, s in CATALOGUE.items() if s.unit == canonical and unit in s.accepted_units
    )
    converted = to_canonical(metric, value, unit)
    assert math.isfinite(converted)
    assert to_canonical(metric, value + 1.0, unit) > converted
