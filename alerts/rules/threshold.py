"""Threshold rules: a limit per metric, with hysteresis and an optional sustained duration.

Semantics, for a ``high`` rule (``low`` is the mirror image):

* a reading at or above ``limit`` (above it when ``inclusive`` is false) starts an
  excursion; with ``sustained_s = 0`` it hits at once, otherwise it hits when every
  reading since the excursion began has stayed beyond the limit for at least
  ``sustained_s`` (for continuous streams such as wearables);
* while breached, each further reading above the limit is a repeat hit (it updates the
  open alert: count, latest and worst value — never a second alert);
* the breach ends only when a reading falls to ``limit − hysteresis`` or below; readings
  between the two neither hit nor clear, so a value hovering at the limit cannot flap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from alerts.rules.types import Cleared, Priority, RuleHit


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    rule_id: str
    metric: str
    direction: str  # "high" or "low"
    limit: float
    priority: Priority
    hysteresis: float = 0.0
    sustained_s: float = 0.0
    label: str = ""
    inclusive: bool = True  # True: at the limit counts as beyond (≥ / ≤)


@dataclass(frozen=True, slots=True)
class ThresholdState:
    breached: bool = False
    since: datetime | None = None  # start of the current excursion beyond the limit


def _beyond(rule: ThresholdRule, value: float) -> bool:
    if rule.direction == "high":
        return value >= rule.limit if rule.inclusive else value > rule.limit
    return value <= rule.limit if rule.inclusive else value < rule.limit


def _recovered(rule: ThresholdRule, value: float) -> bool:
    """Back inside by the hysteresis margin (with no margin: simply not beyond)."""
    if rule.hysteresis == 0:
        return not _beyond(rule, value)
    if rule.direction == "high":
        return value <= rule.limit - rule.hysteresis
    return value >= rule.limit + rule.hysteresis


def evaluate_threshold(
    rule: ThresholdRule, state: ThresholdState, value: float, at: datetime
) -> tuple[ThresholdState, RuleHit | Cleared | None]:
    if _beyond(rule, value):
        since = state.since or at
        if state.breached or (at - since).total_seconds() >= rule.sustained_s:
            sign = {
                ("high", True): "≥",
                ("high", False): ">",
                ("low", True): "≤",
                ("low", False): "<",
            }[(rule.direction, rule.inclusive)]
            hit = RuleHit(
                rule_id=rule.rule_id,
                kind="threshold",
                metric=rule.metric,
                priority=rule.priority,
                value=value,
                measured_at=at,
                direction=rule.direction,
                message=f"{rule.label or rule.metric} {value:g} {sign} {rule.limit:g}",
                details={"limit": rule.limit, "sustained_s": rule.sustained_s},
            )
            return ThresholdState(True, since), hit
        return ThresholdState(False, since), None
    if state.breached:
        if _recovered(rule, value):
            return ThresholdState(), Cleared(rule.rule_id, at, value)
        return ThresholdState(True, None), None  # inside the hysteresis band: hold
    return ThresholdState(), None
