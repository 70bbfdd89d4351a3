"""Questionable readings: what a device (or ingest) flagged as possibly wrong.

A reading is **questionable** when it carries a flag that says the measurement itself may
be wrong for that metric:

* ``implausible`` (added by ingest: possible, but outside the plausible range),
  ``questionable`` and ``body_movement`` — any metric;
* ``cuff_fit`` and ``irregular_pulse`` — blood pressure (``systolic_bp``,
  ``diastolic_bp``): an oscillometric cuff is unreliable with a loose cuff or an irregular
  rhythm (the pulse rate it reports is still used);
* ``low_perfusion`` — oximetry (``spo2`` and the oximeter's ``heart_rate``).

Other flags are kept with the reading and change nothing. A questionable reading is stored
but never reaches a clinical rule — no alarm from it alone, and no part of a window or a
baseline: the rule engine asks the device that took it for a retake instead, and the
adherence pass raises a technical alert when no good reading of that metric arrives within
the patient's ``quality.retake_within_min``. The same classification is the SQL function
``homeward_questionable(metric, flags)`` (migration 0010); a test holds the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from homeward.metrics import IMPLAUSIBLE_FLAG

ANY_METRIC = frozenset({IMPLAUSIBLE_FLAG, "questionable", "body_movement"})
BLOOD_PRESSURE = frozenset({"systolic_bp", "diastolic_bp"})
OXIMETRY = frozenset({"spo2", "heart_rate"})
PER_METRIC: Mapping[str, frozenset[str]] = {
    "cuff_fit": BLOOD_PRESSURE,
    "irregular_pulse": BLOOD_PRESSURE,
    "low_perfusion": OXIMETRY,
}
KNOWN_FLAGS = ANY_METRIC | frozenset(PER_METRIC)


def questioning(metric: str, flags: Iterable[str] | None) -> tuple[str, ...]:
    """The flags that make this reading of ``metric`` questionable (empty: it is good)."""
    if not flags:
        return ()
    return tuple(f for f in flags if f in ANY_METRIC or metric in PER_METRIC.get(f, ()))


def questionable(metric: str, flags: Iterable[str] | None) -> bool:
    return bool(questioning(metric, flags))


# What the patient is asked, by the first flag found in this order.
_ASK: tuple[tuple[str, str], ...] = (
    ("cuff_fit", "Please check the cuff fits snugly on your bare upper arm and measure again."),
    ("body_movement", "Please sit still, rest your arm and measure again."),
    (
        "irregular_pulse",
        "Your device could not measure reliably. Please rest for 5 minutes and measure again.",
    ),
    ("low_perfusion", "Please warm your hand, keep it still and measure again."),
)
_ASK_DEFAULT = "That reading may not be right. Please take it again."


@dataclass(frozen=True, slots=True)
class RetakeRequest:
    """Ask ``device_id`` to measure ``metric`` again (one per questionable reading)."""

    patient_id: int
    device_id: str
    metric: str
    measured_at: datetime
    flags: tuple[str, ...]


def retake_message(flags: Iterable[str]) -> str:
    present = set(flags)
    for flag, message in _ASK:
        if flag in present:
            return message
    return _ASK_DEFAULT
