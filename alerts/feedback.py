"""Feedback to the patient on their device (``…/devices/{id}/feedback``), for configured
rules: what the patient sees when a rule raises an alert. Plain words, no numbers that
could be misread as advice; the team always follows up."""

from __future__ import annotations

from alerts.rules.types import RuleHit

# rule id prefix → message (first match wins)
MESSAGES: tuple[tuple[str, str], ...] = (
    (
        "threshold:systolic_bp:stage2",
        "Please sit quietly for 5 minutes and repeat your blood pressure.",
    ),
    (
        "threshold:blood_glucose:hypo",
        "Your sugar is low: follow your hypo plan and re-check in 15 minutes.",
    ),
    (
        "threshold:blood_glucose:severe",
        "Your sugar is very low: follow your hypo plan now. Your nurse has been told.",
    ),
    (
        "change:body_weight",
        "Your weight has gone up. Your nurse has been told and will contact you.",
    ),
    ("threshold:", "Your reading has been sent to your nurse, who will contact you."),
    ("news2", "Your readings have been sent to your nurse, who will contact you."),
)


def feedback_for(hit: RuleHit) -> str | None:
    for prefix, message in MESSAGES:
        if hit.rule_id.startswith(prefix):
            return message
    return None
