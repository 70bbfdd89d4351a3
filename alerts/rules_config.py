"""Per-patient rule configuration in PostgreSQL: overrides with who, when, why and the
previous values. A change is validated against the whole effective rule set first and
applied all-or-nothing; the engine picks it up from the next reading on (it compares the
stored version with the one it loaded)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerts.careplans import EffectiveRule, effective_rules
from devices.registry import Patient, patient_by_nhs
from homeward.db.connect import wrap_exceptions
from homeward.db.queries import load_queries
from homeward.errors import ValidationError

Q = load_queries(Path(__file__).with_name("rules_config.sql"))
Conn = psycopg.Connection[Any]


def current_overrides(conn: Conn, patient: Patient) -> tuple[dict[str, dict[str, Any]], int]:
    with wrap_exceptions():
        row = conn.execute(Q["lock_rules"], {"patient_id": patient.patient_id}).fetchone()
    return (dict(row[0]), int(row[1])) if row else ({}, 0)


def show_rules(conn: Conn, nhs_number: str) -> tuple[Patient, dict[str, EffectiveRule], int]:
    patient = patient_by_nhs(conn, nhs_number)
    overrides, version = current_overrides(conn, patient)
    return patient, effective_rules(patient.conditions, overrides), version


def set_rules(
    conn: Conn,
    nhs_number: str,
    rule_id: str,
    changes: Mapping[str, Any],
    *,
    by: str,
    reason: str,
) -> int:
    """Apply ``changes`` to one rule; returns the new version. Nothing is written on error."""
    if not by.strip() or not reason.strip():
        raise ValidationError("a rule change needs --by (who) and --reason (why)")
    if not changes:
        raise ValidationError("nothing to change: give field=value pairs")
    patient = patient_by_nhs(conn, nhs_number)
    with conn.transaction():
        previous, version = current_overrides(conn, patient)  # row locked until commit
        merged = {k: dict(v) for k, v in previous.items()}
        merged.setdefault(rule_id, {}).update(changes)
        effective_rules(patient.conditions, merged)  # raises, and nothing is applied
        params = {
            "patient_id": patient.patient_id,
            "version": version + 1,
            "by": by,
            "reason": reason,
        }
        with wrap_exceptions():
            conn.execute(Q["upsert_rules"], {**params, "overrides": Jsonb(merged)})
            conn.execute(
                Q["insert_history"],
                {**params, "previous": Jsonb(previous), "current": Jsonb(merged)},
            )
    return version + 1


def last_decisions(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per rule, who last changed it, when and why (from the rule history): the record of a
    clinician's decision, e.g. a patient's SpO2 target and NEWS2 scale."""
    out: dict[str, dict[str, Any]] = {}
    for change in history:  # oldest first
        previous, current = change["previous"] or {}, change["current"] or {}
        for rule_id in {*previous, *current}:
            if previous.get(rule_id) != current.get(rule_id):
                out[rule_id] = {
                    "by": change["changed_by"],
                    "at": change["changed_at"],
                    "reason": change["reason"],
                }
    return out


def rules_history(conn: Conn, nhs_number: str) -> list[dict[str, Any]]:
    patient = patient_by_nhs(conn, nhs_number)
    with wrap_exceptions(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["history"], {"patient_id": patient.patient_id}).fetchall()
