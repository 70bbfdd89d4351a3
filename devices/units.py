"""Explicit unit conversion into each metric's canonical UCUM unit.

Only the units listed for a metric in the catalogue are accepted, spelled exactly as
UCUM codes. Anything else raises :class:`UnitError`: a wrong unit is rejected, never
guessed (``mmHg``, ``lbs``, ``F`` are unknown, ``mm[Hg]``, ``[lb_av]``, ``[degF]`` are not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from homeward.errors import UnitError
from homeward.metrics import CATALOGUE

MMHG_PER_KPA = 7.50062
KG_PER_LB = 0.45359237
MGDL_PER_MMOLL = 18.0  # glucose, as UK practice uses (docs/references.md)

Converter = Callable[[float], float]

# (from unit, to canonical unit) → function. Identity entries cover UCUM annotations.
CONVERSIONS: dict[tuple[str, str], Converter] = {
    ("{beats}/min", "/min"): lambda v: v,
    ("{breaths}/min", "/min"): lambda v: v,
    ("kPa", "mm[Hg]"): lambda v: v * MMHG_PER_KPA,
    ("[degF]", "Cel"): lambda v: (v - 32.0) * 5.0 / 9.0,
    ("g", "kg"): lambda v: v / 1000.0,
    ("[lb_av]", "kg"): lambda v: v * KG_PER_LB,
    ("mg/dL", "mmol/L"): lambda v: v / MGDL_PER_MMOLL,
}

Verdict = Literal["impossible", "implausible", "ok"]


def to_canonical(metric: str, value: float, unit: str) -> float:
    """``value`` in ``unit`` expressed in the metric's canonical unit."""
    spec = CATALOGUE.get(metric)
    if spec is None:
        raise UnitError(f"unknown metric {metric!r}")
    if unit == spec.unit:
        return value
    if unit not in spec.accepted_units:
        raise UnitError(
            f"unit {unit!r} is not accepted for {metric}; accepted: "
            + ", ".join(spec.accepted_units)
        )
    return CONVERSIONS[(unit, spec.unit)](value)


def classify(metric: str, canonical_value: float) -> Verdict:
    """Impossible (reject), implausible (store and flag) or ok; bounds are inclusive."""
    spec = CATALOGUE[metric]
    low, high = spec.possible
    if not low <= canonical_value <= high:
        return "impossible"
    low, high = spec.plausible
    if not low <= canonical_value <= high:
        return "implausible"
    return "ok"
