"""NEWS2 (Royal College of Physicians, 2017, chart 1) — a pure function of one vital set.

Rounding, stated once: temperature is rounded to one decimal and every other parameter
to a whole number, half up (``decimal.ROUND_HALF_UP`` on the value as written, so
36.05 °C scores as 36.1 and a respiratory rate of 20.5 as 21), before the chart is
applied. Values that are not finite, negative, or (for SpO2) above 100% are refused with
:class:`~homeward.errors.ValidationError`.

Missing parameters are never scored 0: the score covers the parameters present, is
marked ``partial`` and lists what is missing. With SpO2 scale 2 and the air/oxygen
status unknown, a saturation of 93% or more is scored as on air — and the score is
partial because ``on_oxygen`` is missing. NEWS2 is not validated for self-measurement
at home: it is a prompt for a person to look, not a diagnosis (docs/news2.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import MAX_PREC, ROUND_HALF_UP, Context, Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from homeward.domain import Consciousness
from homeward.errors import ValidationError

# The order of ``News2Score.missing`` and ``News2Score.points``.
PARAMETERS = (
    "respiratory_rate",
    "spo2",
    "on_oxygen",
    "systolic_bp",
    "heart_rate",
    "consciousness",
    "body_temperature",
)
_NUMERIC = ("respiratory_rate", "spo2", "systolic_bp", "heart_rate", "body_temperature")
_CALCULATOR_KEYS = frozenset({*PARAMETERS, "spo2_scale"})

# Precision never limits a quantize: any finite input, however large, rounds exactly.
_ROUNDING = Context(prec=MAX_PREC, rounding=ROUND_HALF_UP)


class Band(StrEnum):
    LOW = "low"  # 0–4: assessment by a registered nurse (0: routine monitoring)
    LOW_MEDIUM = "low-medium"  # a 3 in any single parameter: urgent ward-based response
    MEDIUM = "medium"  # 5–6: urgent review — the key threshold
    HIGH = "high"  # 7 or more: emergency assessment


@dataclass(frozen=True, slots=True)
class VitalSet:
    """One set of observations in canonical units: /min, %, mm[Hg], Cel. ``None`` = missing.

    ``spo2_scale`` is 2 only for patients with documented hypercapnic respiratory failure.
    """

    respiratory_rate: float | None = None
    spo2: float | None = None
    spo2_scale: int = 1
    on_oxygen: bool | None = None
    systolic_bp: float | None = None
    heart_rate: float | None = None
    consciousness: Consciousness | None = None
    body_temperature: float | None = None


@dataclass(frozen=True, slots=True)
class News2Score:
    """The aggregate of the parameters present; ``points`` holds only those, in chart order."""

    score: int
    band: Band
    single_parameter_3: bool
    partial: bool
    missing: tuple[str, ...]
    points: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


def _chart_value(name: str, value: float, places: int = 0) -> Decimal | int:
    """``value`` rounded half up to ``places`` decimals, after checking it is a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{name} must be a number, got {value!r}")
    if places == 0 and 0 <= value < 1e15:
        # Whole numbers, without Decimal: a half (x.5) is exact in binary, ``value -
        # floor`` is exact, and below 1e15 the shortest decimal that reads back as
        # ``value`` keeps its whole part, so this rounds as the written decimal does.
        whole = math.floor(value)
        return whole + 1 if value - whole >= 0.5 else whole
    # str(): the decimal the user wrote (35.05), not its binary approximation (35.04999…).
    exact = Decimal(value) if isinstance(value, int) else Decimal(str(value))
    if not exact.is_finite() or exact < 0:
        raise ValidationError(f"{name} must be a finite, non-negative number, got {value!r}")
    return exact.quantize(Decimal(1).scaleb(-places), context=_ROUNDING)


def respiratory_rate_points(rate: float) -> int:
    r = _chart_value("respiratory_rate", rate)
    if r <= 8:
        return 3
    if r <= 11:
        return 1
    if r <= 20:
        return 0
    if r <= 24:
        return 2
    return 3


def spo2_points(spo2: float, *, scale: int, on_oxygen: bool | None) -> int:
    """Scale 2 above 92% depends on oxygen; unknown (``None``) is scored as air."""
    _check_scale(scale)
    s = _chart_value("spo2", spo2)
    if s > 100:
        raise ValidationError(f"spo2 must be at most 100%, got {spo2!r}")
    if scale == 1:
        if s <= 91:
            return 3
        if s <= 93:
            return 2
        if s <= 95:
            return 1
        return 0
    if s <= 83:
        return 3
    if s <= 85:
        return 2
    if s <= 87:
        return 1
    if s <= 92 or not on_oxygen:
        return 0  # 88–92, or ≥ 93 on air
    if s <= 94:
        return 1
    if s <= 96:
        return 2
    return 3


def oxygen_points(on_oxygen: bool) -> int:
    if not isinstance(on_oxygen, bool):
        raise ValidationError(f"on_oxygen must be true or false, got {on_oxygen!r}")
    return 2 if on_oxygen else 0


def systolic_points(systolic: float) -> int:
    s = _chart_value("systolic_bp", systolic)
    if s <= 90:
        return 3
    if s <= 100:
        return 2
    if s <= 110:
        return 1
    if s <= 219:
        return 0
    return 3


def pulse_points(pulse: float) -> int:
    p = _chart_value("heart_rate", pulse)
    if p <= 40:
        return 3
    if p <= 50:
        return 1
    if p <= 90:
        return 0
    if p <= 110:
        return 1
    if p <= 130:
        return 2
    return 3


def consciousness_points(level: Consciousness) -> int:
    try:
        level = Consciousness(level)
    except ValueError:
        raise ValidationError(
            f"consciousness must be one of A, C, V, P, U, got {level!r}"
        ) from None
    return 0 if level is Consciousness.ALERT else 3


def temperature_points(celsius: float) -> int:
    t = _chart_value("body_temperature", celsius, places=1)
    if t <= Decimal("35.0"):
        return 3
    if t <= Decimal("36.0"):
        return 1
    if t <= Decimal("38.0"):
        return 0
    if t <= Decimal("39.0"):
        return 1
    return 2


def band_for(score: int, single_parameter_3: bool) -> Band:
    """RCP response bands; a single 3 only raises an aggregate below 5 to low-medium."""
    if score >= 7:
        return Band.HIGH
    if score >= 5:
        return Band.MEDIUM
    if single_parameter_3:
        return Band.LOW_MEDIUM
    return Band.LOW


def alert_priority(
    score: int,
    single_parameter_3: bool,
    *,
    amber_at: int = 5,
    red_at: int = 7,
    alert_on_single_3: bool = True,
) -> str | None:
    """Which alert a score raises under a patient's NEWS2 rule: ``"red"`` from ``red_at``
    (RCP: 7 or more, emergency assessment), ``"amber"`` from ``amber_at`` (RCP: 5–6, urgent
    review) or — with ``alert_on_single_3`` — for a 3 in any single parameter (RCP:
    low-medium, urgent response); ``None`` below all of them. The defaults are the RCP
    bands; the reported band (:func:`band_for`) is always the RCP one."""
    if score >= red_at:
        return "red"
    if score >= amber_at or (alert_on_single_3 and single_parameter_3):
        return "amber"
    return None


def score_news2(v: VitalSet) -> News2Score:
    """Score the parameters present in ``v``; the rest are listed as missing, never 0."""
    _check_scale(v.spo2_scale)
    points: dict[str, int] = {}
    if v.respiratory_rate is not None:
        points["respiratory_rate"] = respiratory_rate_points(v.respiratory_rate)
    if v.spo2 is not None:
        points["spo2"] = spo2_points(v.spo2, scale=v.spo2_scale, on_oxygen=v.on_oxygen)
    if v.on_oxygen is not None:
        points["on_oxygen"] = oxygen_points(v.on_oxygen)
    if v.systolic_bp is not None:
        points["systolic_bp"] = systolic_points(v.systolic_bp)
    if v.heart_rate is not None:
        points["heart_rate"] = pulse_points(v.heart_rate)
    if v.consciousness is not None:
        points["consciousness"] = consciousness_points(v.consciousness)
    if v.body_temperature is not None:
        points["body_temperature"] = temperature_points(v.body_temperature)
    return score_points(points)


def score_points(points: Mapping[str, int]) -> News2Score:
    """Aggregate, band and missing list from points already read off the chart per
    parameter (the rule engine keeps each parameter's points as its readings arrive)."""
    ordered = {p: points[p] for p in PARAMETERS if p in points}
    missing = tuple(p for p in PARAMETERS if p not in ordered)
    score = sum(ordered.values())
    single = 3 in ordered.values()
    return News2Score(
        score=score,
        band=band_for(score, single),
        single_parameter_3=single,
        partial=bool(missing),
        missing=missing,
        points=MappingProxyType(ordered),
    )


def _check_scale(scale: int) -> None:
    if isinstance(scale, bool) or scale not in (1, 2):
        raise ValidationError(f"spo2_scale must be 1 or 2, got {scale!r}")


def parse_calculator_line(obj: object) -> VitalSet:
    """One JSON object of the calculator's input; unknown keys and wrong types refused.

    Every key may be missing or ``null``; ``spo2_scale`` then defaults to 1.
    """
    if not isinstance(obj, dict):
        raise ValidationError(f"each line must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(str(key) for key in obj if key not in _CALCULATOR_KEYS)
    if unknown:
        raise ValidationError(
            f"unknown key {', '.join(unknown)} (known: {', '.join(sorted(_CALCULATOR_KEYS))})"
        )
    values: dict[str, Any] = {}
    for key in _NUMERIC:
        value = obj.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValidationError(f"{key} must be a number, got {value!r}")
        values[key] = value
    scale = obj.get("spo2_scale")
    if scale is None:
        scale = 1
    if not isinstance(scale, int):
        raise ValidationError(f"spo2_scale must be 1 or 2, got {scale!r}")
    _check_scale(scale)
    on_oxygen = obj.get("on_oxygen")
    if on_oxygen is not None and not isinstance(on_oxygen, bool):
        raise ValidationError(f"on_oxygen must be true or false, got {on_oxygen!r}")
    level = obj.get("consciousness")
    if level is not None:
        if not isinstance(level, str) or level not in {c.value for c in Consciousness}:
            raise ValidationError(f"consciousness must be one of A, C, V, P, U, got {level!r}")
        level = Consciousness(level)
    return VitalSet(spo2_scale=scale, on_oxygen=on_oxygen, consciousness=level, **values)


def score_to_json(score: News2Score) -> dict[str, Any]:
    """The calculator's output object (and the shape alert details use)."""
    return {
        "score": score.score,
        "band": score.band.value,
        "single_parameter_3": score.single_parameter_3,
        "partial": score.partial,
        "missing": list(score.missing),
        "points": dict(score.points),
    }
