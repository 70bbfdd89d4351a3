"""Types shared by the rule kinds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Priority(StrEnum):
    RED = "red"  # urgent: same-day clinical response; latches until a person resolves it
    AMBER = "amber"  # advisory: review within the working day
    TECHNICAL = "technical"  # device silence, missed readings: not a clinical finding


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule's decision that a patient needs a person to look."""

    rule_id: str
    kind: str
    metric: str | None
    priority: Priority
    value: float | None
    measured_at: datetime
    message: str
    direction: str | None = None  # "high" / "low": which way "worse" is, for worst value
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Cleared:
    """Values are back to normal for a rule that had hit (the alert latches)."""

    rule_id: str
    measured_at: datetime
    value: float | None
