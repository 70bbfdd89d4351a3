"""The metric catalogue (docs/payload.md, docs/references.md): names are the contract, units
are UCUM codes.

Each metric has a canonical unit, the other units it is accepted in (converted
explicitly in :mod:`devices.units`), and two ranges:

* ``possible`` — outside it a value is physiologically impossible for a living patient or
  outside what any home device can measure: the message is **rejected** to quarantine;
* ``plausible`` — outside it (but possible) the value is **stored and flagged**
  ``implausible`` for a person to review.

Both ranges are inclusive and expressed in the canonical unit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    display: str
    loinc: str
    unit: str  # canonical UCUM code
    accepted_units: tuple[str, ...]  # includes the canonical unit
    possible: tuple[float, float]
    plausible: tuple[float, float]
    decimals: int  # display and rounding precision in the canonical unit
    alt_loinc: tuple[str, ...] = ()


IMPLAUSIBLE_FLAG = "implausible"

CATALOGUE: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec(
            "heart_rate",
            "Heart rate",
            "8867-4",
            "/min",
            ("/min", "{beats}/min"),
            possible=(1, 350),
            plausible=(25, 220),
            decimals=0,
        ),
        MetricSpec(
            "respiratory_rate",
            "Respiratory rate",
            "9279-1",
            "/min",
            ("/min", "{breaths}/min"),
            possible=(1, 100),
            plausible=(4, 60),
            decimals=0,
        ),
        MetricSpec(
            "spo2",
            "Oxygen saturation",
            "59408-5",
            "%",
            ("%",),
            possible=(0, 100),
            plausible=(50, 100),
            decimals=0,
            alt_loinc=("2708-6",),
        ),
        MetricSpec(
            "systolic_bp",
            "Systolic blood pressure",
            "8480-6",
            "mm[Hg]",
            ("mm[Hg]", "kPa"),
            possible=(20, 320),
            plausible=(50, 280),
            decimals=0,
        ),
        MetricSpec(
            "diastolic_bp",
            "Diastolic blood pressure",
            "8462-4",
            "mm[Hg]",
            ("mm[Hg]", "kPa"),
            possible=(10, 220),
            plausible=(20, 160),
            decimals=0,
        ),
        MetricSpec(
            "body_temperature",
            "Body temperature",
            "8310-5",
            "Cel",
            ("Cel", "[degF]"),
            possible=(25, 45),
            plausible=(32, 43),
            decimals=1,
        ),
        MetricSpec(
            "body_weight",
            "Body weight",
            "29463-7",
            "kg",
            ("kg", "g", "[lb_av]"),
            possible=(0.5, 500),
            plausible=(20, 350),
            decimals=1,
        ),
        MetricSpec(
            "blood_glucose",
            "Blood glucose (capillary)",
            "15074-8",
            "mmol/L",
            ("mmol/L", "mg/dL"),
            possible=(0.1, 60),
            plausible=(1.1, 33.3),
            decimals=1,
            alt_loinc=("14743-9", "2339-0"),
        ),
    )
}

BP_PANEL_LOINC = "85354-9"
VITAL_SIGNS_PANEL_LOINC = "85353-1"
