"""``homeward rules``: what a patient's rules are, where each value came from, and changes."""

from __future__ import annotations

from typing import Any

import click

from alerts.careplans import coerce_override_value
from alerts.rules_config import last_decisions, rules_history, set_rules, show_rules
from commands.audit_trail import record_read
from commands.common import database
from commands.output import emit
from homeward.db.connect import connect
from homeward.errors import ValidationError
from homeward.nhs import normalise_nhs_number

_HIDDEN = {"id", "kind", "source", "enabled"}


@click.group()
def rules() -> None:
    """Per-patient thresholds and rules (care-plan templates + clinician overrides)."""


@rules.command("show")
@click.argument("nhs_number")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rules_show(ctx: click.Context, nhs_number: str, as_json: bool) -> None:
    """Effective rules, each value marked with where it came from (template or override)."""
    with database(ctx) as dsn, connect(dsn) as conn:
        patient, effective, version = show_rules(conn, nhs_number)
        decided = last_decisions(rules_history(conn, nhs_number))
        record_read(conn, ctx, "show_rules", patient_ids=[patient.patient_id])
    rows: list[dict[str, Any]] = []
    for rule_id, item in effective.items():
        settings = {k: v for k, v in item.rule.model_dump().items() if k not in _HIDDEN}
        decision = decided.get(rule_id)
        rows.append(
            {
                "rule": rule_id,
                "enabled": item.rule.enabled,
                "settings": settings
                if as_json
                else ", ".join(
                    f"{k}={v}{'*' if k in item.overridden else ''}" for k, v in settings.items()
                ),
                "origin": item.origin,
                "overridden": list(item.overridden),
                "source": item.rule.source,
                "decided": decision
                if as_json or decision is None
                else f"{decision['by']}, {decision['at']:%Y-%m-%d %H:%M}: {decision['reason']}",
            }
        )
    if not as_json:
        click.echo(
            f"{patient.display_name} ({patient.nhs_number}), conditions: "
            f"{', '.join(patient.conditions) or 'none'}, rules version {version}; "
            "* marks a clinician's override"
        )
    emit(rows, as_json=as_json, title="effective rules")


@rules.command("set")
@click.argument("nhs_number")
@click.argument("rule_id")
@click.argument("changes", nargs=-1, required=True)
@click.option("--by", required=True, help="Who makes the change (user id).")
@click.option("--reason", required=True, help="Why: kept in the history.")
@click.pass_context
def rules_set(
    ctx: click.Context,
    nhs_number: str,
    rule_id: str,
    changes: tuple[str, ...],
    by: str,
    reason: str,
) -> None:
    """Change RULE_ID for a patient: field=value ... (e.g. limit=170 hysteresis=5)."""
    parsed: dict[str, Any] = {}
    for change in changes:
        field, sep, value = change.partition("=")
        if not sep or not field:
            raise ValidationError(f"expected field=value, got {change!r}")
        parsed[field.strip()] = coerce_override_value(value)
    with database(ctx) as dsn, connect(dsn) as conn:
        version = set_rules(conn, nhs_number, rule_id, parsed, by=by, reason=reason)
    click.echo(f"rules version {version}: {rule_id} {', '.join(changes)} (by {by})")


@rules.command("history")
@click.argument("nhs_number")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rules_history_cmd(ctx: click.Context, nhs_number: str, as_json: bool) -> None:
    """Every change to the patient's rules: who, when, why, before and after."""
    with database(ctx) as dsn, connect(dsn) as conn:
        rows = rules_history(conn, nhs_number)
        record_read(conn, ctx, "rules_history", nhs_numbers=[normalise_nhs_number(nhs_number)])
    emit(rows, as_json=as_json, title="rule changes")
