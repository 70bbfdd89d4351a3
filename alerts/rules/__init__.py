"""Rule kinds: pure functions of a patient's readings, the rule's configuration and time.

No I/O and no clock reads: every function takes the time it decides at (a reading's time,
or ``now``) and returns a decision value — :class:`~alerts.rules.types.RuleHit`,
:class:`~alerts.rules.types.Cleared`, a miss or a silence, or ``None`` — with the new
state where the rule has one (thresholds, CUSUM).
"""

from alerts.rules.missed import (
    AdherenceMiss,
    DeviceSilence,
    Schedule,
    device_silent,
    due_missed_readings,
    next_check_at,
)
from alerts.rules.threshold import ThresholdRule, ThresholdState, evaluate_threshold
from alerts.rules.trend import (
    BaselineRule,
    ChangeRule,
    CusumRule,
    CusumState,
    SlopeRule,
    evaluate_baseline,
    evaluate_change,
    evaluate_cusum,
    evaluate_slope,
)
from alerts.rules.types import Cleared, Priority, RuleHit, Sample

__all__ = [
    "AdherenceMiss",
    "BaselineRule",
    "ChangeRule",
    "Cleared",
    "CusumRule",
    "CusumState",
    "DeviceSilence",
    "Priority",
    "RuleHit",
    "Sample",
    "Schedule",
    "SlopeRule",
    "ThresholdRule",
    "ThresholdState",
    "device_silent",
    "due_missed_readings",
    "evaluate_baseline",
    "evaluate_change",
    "evaluate_cusum",
    "evaluate_slope",
    "evaluate_threshold",
    "next_check_at",
]
