"""Types shared by the rule kinds: priorities, the decision values a rule returns, samples.

Time conventions. Threshold rules see one reading at a time and take its ``datetime``.
Trend rules see a window: two numpy ``float64`` arrays of the same length, ``times`` in
epoch seconds (UTC) and ``values`` in the metric's canonical unit, oldest first, ending
with the reading being evaluated. Epoch seconds as ``float64`` keep microsecond resolution
for centuries and let ``numpy.searchsorted`` find a window's start without conversions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from homeward.metrics import CATALOGUE

Array = npt.NDArray[np.float64]


class Priority(StrEnum):
    RED = "red"  # urgent: same-day clinical response; latches until a person resolves it
    AMBER = "amber"  # advisory: review within the working day
    TECHNICAL = "technical"  # device silence, missed readings: not a clinical finding


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule's decision that a patient needs a person to look.

    ``rule_id`` names the rule in the patient's rule set (``threshold:systolic_bp:severe``);
    the alert store keeps at most one open alert per patient and ``rule_id``, so repeated
    hits update it. ``direction`` says which way "worse" is ("high"/"low"), so the store
    can keep the worst value. ``details`` holds the numbers behind the decision (limit,
    reference, baseline, ...) for the clinician's view; keys are rule-kind specific.
    """

    rule_id: str
    kind: str
    metric: str | None
    priority: Priority
    value: float | None
    measured_at: datetime
    message: str
    direction: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    device_id: str | None = None  # the device that took the reading (its feedback goes there)


@dataclass(frozen=True, slots=True)
class Cleared:
    """Values are back inside a rule that had hit. The alert latches: it stays open and is
    marked "condition cleared" until a person resolves it."""

    rule_id: str
    measured_at: datetime
    value: float | None


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one metric: ``t`` in epoch seconds (UTC), ``value`` canonical."""

    t: float
    value: float

    @classmethod
    def at(cls, when: datetime, value: float) -> Sample:
        if when.tzinfo is None:
            raise ValueError("a sample's time needs a time zone")
        return cls(when.timestamp(), float(value))

    @property
    def measured_at(self) -> datetime:
        return utc(self.t)


def utc(t: float) -> datetime:
    """Epoch seconds → aware UTC datetime."""
    return datetime.fromtimestamp(t, UTC)


def window(samples: list[Sample] | list[tuple[float, float]]) -> tuple[Array, Array]:
    """Samples (or ``(t, value)`` pairs) → the ``times, values`` arrays trend rules take,
    sorted by time (stable, so equal times keep their order)."""
    pairs = [(s.t, s.value) if isinstance(s, Sample) else s for s in samples]
    pairs.sort(key=lambda p: p[0])
    times = np.fromiter((p[0] for p in pairs), dtype=np.float64, count=len(pairs))
    values = np.fromiter((p[1] for p in pairs), dtype=np.float64, count=len(pairs))
    return times, values


_DISPLAY_UNITS = {"mm[Hg]": "mmHg", "Cel": "°C", "/min": "/min", "%": "%"}


def describe(metric: str | None, value: float) -> str:
    """``Systolic blood pressure 186 mmHg``: a metric's display name, value and unit,
    rounded to the metric's display precision (the raw value stays in the hit)."""
    spec = CATALOGUE.get(metric or "")
    if spec is None:
        return f"{metric} {value:g}"
    unit = _DISPLAY_UNITS.get(spec.unit, spec.unit)
    return f"{spec.display} {value:.{spec.decimals}f} {unit}"
