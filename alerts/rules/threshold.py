"""Threshold rules: one limit per rule, with hysteresis and an optional sustained duration.

A metric may carry several threshold rules at once — e.g. systolic ≥ 150 amber and
≥ 180 red — each with its own state, so each is its own alert.

The state machine, per (patient, rule), for a ``high`` rule (``low`` is the mirror image):

``inside`` ──reading beyond the limit (≥ limit, or > with ``inclusive=False``)──▶ ``breached``
    With ``sustained_s > 0`` (continuous streams) the hit waits until *every* reading
    since the excursion began has stayed beyond the limit and those readings span at least
    ``sustained_s``; a reading back inside, or a gap between readings longer than
    ``max_gap_s`` (default: ``sustained_s``), restarts the clock.
``breached`` ──reading ≤ limit − hysteresis──▶ ``inside``, returning :class:`Cleared`
    Readings between ``limit − hysteresis`` and the limit neither hit nor clear: a value
    hovering at the limit raises one alert and cannot flap. While breached, each reading
    beyond the limit is a repeat hit (``details["onset"]`` is false): the open alert is
    updated (count, latest and worst value), never duplicated.

Readings older than the newest one the state has seen (out of order) never move the state
— an old reading cannot clear or re-arm a rule — but one beyond the limit of a rule without
a sustained duration is still reported (``details["out_of_order"]``), because it is a real
value a person should see. With ``now`` given and ``stale_after_s`` set, a reading older
than that is ignored altogether: stale data never alerts as if current (the engine lists
such readings for review instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from alerts.rules.types import Cleared, Priority, RuleHit, describe

_SIGNS = {("high", True): "≥", ("high", False): ">", ("low", True): "≤", ("low", False): "<"}


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
    max_gap_s: float | None = None  # sustained rules: longest gap that keeps the clock
    stale_after_s: float | None = None  # with ``now``: older readings are not evaluated

    def __post_init__(self) -> None:
        if self.direction not in ("high", "low"):
            raise ValueError(f"{self.rule_id}: direction must be 'high' or 'low'")
        if not math.isfinite(self.limit):
            raise ValueError(f"{self.rule_id}: the limit must be a finite number")
        if not (self.hysteresis >= 0 and self.sustained_s >= 0):
            raise ValueError(f"{self.rule_id}: hysteresis and duration cannot be negative")


class ThresholdState(NamedTuple):
    """Immutable; a named tuple because the engine makes one per rule per reading."""

    breached: bool = False
    since: datetime | None = None  # first reading of the current run beyond the limit
    last_at: datetime | None = None  # newest reading this state has seen


def beyond(rule: ThresholdRule, value: float) -> bool:
    """Is ``value`` beyond the limit (on the alerting side)?"""
    if rule.direction == "high":
        return value >= rule.limit if rule.inclusive else value > rule.limit
    return value <= rule.limit if rule.inclusive else value < rule.limit


def recovered(rule: ThresholdRule, value: float) -> bool:
    """Back inside by the hysteresis margin (with no margin: simply not beyond)."""
    if rule.hysteresis == 0:
        return not beyond(rule, value)
    if rule.direction == "high":
        return value <= rule.limit - rule.hysteresis
    return value >= rule.limit + rule.hysteresis


def evaluate_threshold(
    rule: ThresholdRule,
    state: ThresholdState,
    value: float,
    at: datetime,
    *,
    now: datetime | None = None,
) -> tuple[ThresholdState, RuleHit | Cleared | None]:
    """One step of the state machine: the new state and the decision for this reading.

    The decision is a :class:`RuleHit` (an alert to raise or update), :class:`Cleared`
    (the breach has ended: mark the latched alert "condition cleared"), or ``None``.
    """
    stale = rule.stale_after_s
    if now is not None and stale is not None and (now - at).total_seconds() > stale:
        return state, None
    if state.last_at is not None and at < state.last_at:
        if rule.sustained_s == 0 and beyond(rule, value):
            return state, _hit(rule, value, at, onset=not state.breached, out_of_order=True)
        return state, None
    if beyond(rule, value):
        since = state.since
        if since is None or _gap_too_long(rule, state, at):
            since = at
        if state.breached:
            return ThresholdState(True, since, at), _hit(rule, value, at, onset=False)
        if (at - since).total_seconds() >= rule.sustained_s:
            return ThresholdState(True, since, at), _hit(rule, value, at, onset=True)
        return ThresholdState(False, since, at), None
    if state.breached:
        if recovered(rule, value):
            return ThresholdState(False, None, at), Cleared(rule.rule_id, at, value)
        return ThresholdState(True, None, at), None  # inside the hysteresis band: hold
    return ThresholdState(False, None, at), None


def _gap_too_long(rule: ThresholdRule, state: ThresholdState, at: datetime) -> bool:
    if rule.sustained_s == 0 or state.last_at is None:
        return False
    max_gap = rule.sustained_s if rule.max_gap_s is None else rule.max_gap_s
    return (at - state.last_at).total_seconds() > max_gap


def _hit(
    rule: ThresholdRule, value: float, at: datetime, *, onset: bool, out_of_order: bool = False
) -> RuleHit:
    sign = _SIGNS[(rule.direction, rule.inclusive)]
    named = rule.label and rule.label != rule.metric
    what = f"{rule.label} {value:g}" if named else describe(rule.metric, value)
    message = f"{what} {sign} {rule.limit:g}"
    if rule.sustained_s:
        message += f" for at least {rule.sustained_s / 60:g} min"
    if out_of_order:
        message += " (an earlier reading, received late)"
    details: dict[str, object] = {
        "limit": rule.limit,
        "inclusive": rule.inclusive,
        "hysteresis": rule.hysteresis,
        "sustained_s": rule.sustained_s,
        "onset": onset,
    }
    if out_of_order:
        details["out_of_order"] = True
    return RuleHit(
        rule_id=rule.rule_id,
        kind="threshold",
        metric=rule.metric,
        priority=rule.priority,
        value=value,
        measured_at=at,
        message=message,
        direction=rule.direction,
        details=details,
    )
