"""Backtest: what a patient's stored readings would have raised with other rule values,
computed by the real rule engine (alerts/engine.py) — no copy of its logic. Used by the
web app's threshold editor (web/thresholds.py).

The readings of the period are fed to a fresh engine one by one, in time order, as the
service fed them. The store keeps one open alert per patient and rule until a person
resolves it; here each alert is taken as resolved once its condition cleared, so an
alert is counted each time a rule fires while it has no alert open (the first hit, and
the first hit after the readings came back inside the rule). Late readings raise no
alert, as in the service (they go to review)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alerts.engine import ManualObservation, PatientSnapshot, RuleEngine


@dataclass(frozen=True, slots=True)
class WouldRaise:
    rule_id: str
    priority: str
    measured_at: datetime
    value: float | None
    message: str


def backtest(
    readings: Iterable[ManualObservation],
    *,
    patient_id: int,
    conditions: tuple[str, ...],
    overrides: Mapping[str, Mapping[str, Any]],
) -> list[WouldRaise]:
    """The alerts ``readings`` would have raised under ``overrides`` (raises the rule
    configuration's ValidationError for values that are refused)."""
    engine = RuleEngine()
    engine.load(
        PatientSnapshot(
            patient_id=patient_id,
            version=0,
            conditions=conditions,
            overrides=overrides,
            history=(),
            breached_rules=frozenset(),
        )
    )
    open_rules: set[str] = set()
    raised: list[WouldRaise] = []
    for reading in sorted(readings, key=lambda r: (r.time, r.metric)):
        decisions = engine.evaluate([reading])
        for _, cleared in decisions.clears:
            open_rules.discard(cleared.rule_id)
        for _, hit in decisions.hits:
            if hit.rule_id in open_rules:
                continue
            open_rules.add(hit.rule_id)
            raised.append(
                WouldRaise(hit.rule_id, hit.priority.value, hit.measured_at, hit.value, hit.message)
            )
    return raised
