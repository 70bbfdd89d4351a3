"""The threshold editor (prescribing clinicians): each threshold's template default
beside the patient's value and where it came from; change values with a required
reason; **backtest** before saving (the real rule engine over the patient's last 30
days of readings, alerts/backtest.py); save applies from the next reading.

Saving is optimistic: the form carries the rules version it was read at, and the save
applies only over that version (the row is locked, and the upsert checks it). Two
clinicians editing at once: the second is told and nothing of theirs is applied. A bad
value (low above high, outside what the metric can be, a wrong unit) is refused with
the rule configuration's own message and nothing is applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiohttp import web
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerts.backtest import WouldRaise, backtest
from alerts.careplans import ThresholdRuleConfig, effective_rules, template_ruleset
from alerts.engine import ManualObservation
from alerts.rules_config import Q as RULES_Q
from api.access import PatientRef, may_change_rules
from api.views import Refused, audit
from homeward.errors import HomewardError, ValidationError
from homeward.metrics import CATALOGUE
from web.patient import patient_of_path, staff_only
from web.render import render, see_other
from web.store import Q

BACKTEST_DAYS = 30


class _VersionMoved(Exception):
    """Another save got there first (the guarded upsert updated nothing)."""


FIELDS = ("limit", "hysteresis")


async def _load(request: web.Request, action: str) -> tuple[Any, Any, dict[str, Any], list[str]]:
    staff_only(request)
    who, conn, patient = await patient_of_path(request, action, {"via": "web"})
    ref = PatientRef(patient["patient_id"], patient["team_id"], frozenset(patient["alert_teams"]))
    decision = may_change_rules(who, ref)
    if not decision.allowed:
        await audit(
            conn,
            who,
            action,
            allowed=False,
            status=404,
            patient_id=patient["patient_id"],
            detail={"reason": decision.reason, "via": "web"},
        )
        raise Refused("no such patient among those you may change", 404)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["patient_details"], {"patient_id": patient["patient_id"]})
        details = await cur.fetchone() or {}
    return who, conn, patient, list(details.get("conditions") or [])


async def _overrides(
    conn: psycopg.AsyncConnection[Any], patient_id: int, *, lock: bool
) -> tuple[dict[str, Any], int]:
    async with conn.cursor() as cur:
        await cur.execute(
            Q["lock_overrides" if lock else "patient_overrides"], {"patient_id": patient_id}
        )
        row = await cur.fetchone()
    return (dict(row[0]), int(row[1])) if row else ({}, 0)


def _rows(
    conditions: list[str], overrides: dict[str, Any], proposed: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    template = template_ruleset(conditions)
    current = effective_rules(conditions, overrides)
    rows = []
    for rule_id, item in sorted(current.items()):
        rule = item.rule
        if not isinstance(rule, ThresholdRuleConfig):
            continue
        default = template.rules.get(rule_id)
        spec = CATALOGUE[rule.metric]
        rows.append(
            {
                "rule_id": rule_id,
                "metric": spec.display,
                "unit": rule.unit,
                "direction": rule.direction,
                "priority": rule.priority,
                "enabled": rule.enabled,
                "default": {f: getattr(default, f, None) for f in FIELDS} if default else None,
                "value": {f: getattr(rule, f) for f in FIELDS},
                "proposed": {f: proposed.get(rule_id, {}).get(f, getattr(rule, f)) for f in FIELDS},
                "overridden": set(item.overridden),
                "source": rule.source if "limit" not in item.overridden else "clinician's override",
                "possible": spec.possible,
            }
        )
    return rows


def _changes(form: Any, current: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The values the form changes, as numbers; a value that is not a number is refused."""
    effective = effective_rules(current["conditions"], current["overrides"])
    changes: dict[str, dict[str, Any]] = {}
    problems = []
    for rule_id, item in effective.items():
        if not isinstance(item.rule, ThresholdRuleConfig):
            continue
        unit = form.get(f"{rule_id}.unit")
        if isinstance(unit, str) and unit and unit != item.rule.unit:
            problems.append(f"{rule_id}: limits are set in {item.rule.unit}, not {unit!r}")
        for field in FIELDS:
            raw = form.get(f"{rule_id}.{field}")
            if not isinstance(raw, str) or not raw.strip():
                continue
            try:
                value = float(raw.strip())
            except ValueError:
                problems.append(f"{rule_id}: {field} must be a number (got {raw.strip()!r})")
                continue
            if value != getattr(item.rule, field):
                changes.setdefault(rule_id, {})[field] = value
    if problems:
        raise ValidationError("nothing applied: " + "; ".join(problems))
    return changes


def _merge(overrides: dict[str, Any], changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = {k: dict(v) for k, v in overrides.items()}
    for rule_id, fields in changes.items():
        merged.setdefault(rule_id, {}).update(fields)
    return merged


async def _readings(
    conn: psycopg.AsyncConnection[Any], patient_id: int, now: datetime
) -> list[ManualObservation]:
    async with conn.cursor() as cur:
        await cur.execute(
            Q["backtest_readings"],
            {"patient_id": patient_id, "since": now - timedelta(days=BACKTEST_DAYS), "until": now},
        )
        rows = await cur.fetchall()
    return [
        ManualObservation(patient_id, metric, time, value, late, on_oxygen, consciousness)
        for time, metric, value, late, on_oxygen, consciousness in rows
    ]


async def _page(
    request: web.Request,
    patient: dict[str, Any],
    conditions: list[str],
    overrides: dict[str, Any],
    version: int,
    *,
    proposed: dict[str, dict[str, Any]] | None = None,
    reason: str = "",
    error: str | None = None,
    result: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    return await render(
        request,
        "thresholds.html",
        {
            "title": f"Thresholds for {patient['display_name']}",
            "patient": patient,
            "rows": _rows(conditions, overrides, proposed or {}),
            "version": version,
            "reason": reason,
            "error": error,
            "result": result,
            "days": BACKTEST_DAYS,
            "done": request.query.get("done"),
        },
        status=status,
    )


async def editor(request: web.Request) -> web.Response:
    _, conn, patient, conditions = await _load(request, "view_thresholds")
    overrides, version = await _overrides(conn, patient["patient_id"], lock=False)
    return await _page(request, patient, conditions, overrides, version)


def _listed(alerts: list[WouldRaise]) -> list[dict[str, Any]]:
    return [
        {
            "rule_id": a.rule_id,
            "priority": a.priority,
            "at": a.measured_at,
            "value": a.value,
            "message": a.message,
        }
        for a in alerts
    ]


async def submit(request: web.Request) -> web.Response:
    """Backtest (``action=backtest``) or save (``action=save``) the form's values."""
    who, conn, patient, conditions = await _load(request, "change_thresholds")
    pid = patient["patient_id"]
    form = await request.post()
    reason = str(form.get("reason", "")).strip()
    try:
        edited_version = int(str(form.get("version", "")))
    except ValueError:
        edited_version = -1
    overrides, version = await _overrides(conn, pid, lock=form.get("action") == "save")
    proposed: dict[str, dict[str, Any]] = {}
    try:
        proposed = _changes(form, {"conditions": conditions, "overrides": overrides})
        merged = _merge(overrides, proposed)
        effective_rules(conditions, merged)  # refuses bad values as a whole, applies nothing
    except HomewardError as exc:
        return await _page(
            request,
            patient,
            conditions,
            overrides,
            version,
            proposed=_raw_proposed(form),
            reason=reason,
            error=str(exc),
            status=400,
        )
    if form.get("action") != "save":
        now = datetime.now(UTC)
        readings = await _readings(conn, pid, now)
        before = backtest(
            readings, patient_id=pid, conditions=tuple(sorted(conditions)), overrides=overrides
        )
        after = backtest(
            readings, patient_id=pid, conditions=tuple(sorted(conditions)), overrides=merged
        )
        await audit(
            conn,
            who,
            "backtest_thresholds",
            allowed=True,
            status=200,
            patient_id=pid,
            detail={
                "changes": proposed,
                "readings": len(readings),
                "before": len(before),
                "after": len(after),
                "via": "web",
            },
        )
        result = {
            "readings": len(readings),
            "before": _listed(before),
            "after": _listed(after),
            "changes": proposed,
        }
        return await _page(
            request,
            patient,
            conditions,
            overrides,
            version,
            proposed=proposed,
            reason=reason,
            result=result,
        )
    problem = None
    if edited_version != version:
        problem = (
            "Someone else changed this patient's thresholds since you opened the page "
            f"(version {version}, you edited {edited_version}). Nothing was saved: "
            "review their values below, then make your change again."
        )
    elif not proposed:
        problem = "Nothing to save: no value differs from the current one."
    elif len(reason) < 3:
        problem = "Give the reason for the change (it is kept in the patient's history)."
    if problem is not None:
        status = 409 if edited_version != version else 400
        await audit(
            conn,
            who,
            "change_thresholds",
            allowed=True,
            status=status,
            patient_id=pid,
            detail={"refused": problem, "changes": proposed, "via": "web"},
        )
        return await _page(
            request,
            patient,
            conditions,
            overrides,
            version,
            proposed=proposed if status == 400 else None,
            reason=reason,
            error=problem,
            status=status,
        )
    params = {"patient_id": pid, "version": version + 1, "by": who.subject, "reason": reason}
    try:
        async with conn.transaction():  # a savepoint: a lost race leaves the audit row
            async with conn.cursor() as cur:
                await cur.execute(Q["save_overrides"], {**params, "overrides": Jsonb(merged)})
                if await cur.fetchone() is None:
                    raise _VersionMoved
                await cur.execute(
                    RULES_Q["insert_history"],
                    {**params, "previous": Jsonb(overrides), "current": Jsonb(merged)},
                )
    except (_VersionMoved, psycopg.errors.UniqueViolation):
        await audit(
            conn,
            who,
            "change_thresholds",
            allowed=True,
            status=409,
            patient_id=pid,
            detail={"refused": "concurrent save", "changes": proposed, "via": "web"},
        )
        current, now_version = await _overrides(conn, pid, lock=False)
        return await _page(
            request,
            patient,
            conditions,
            current,
            now_version,
            error="Someone else saved a change at the same moment. Nothing of yours was saved.",
            status=409,
        )
    await audit(
        conn,
        who,
        "change_thresholds",
        allowed=True,
        status=200,
        patient_id=pid,
        detail={"changes": proposed, "version": version + 1, "reason": reason, "via": "web"},
    )
    return see_other(f"/patients/{patient['nhs_number']}/thresholds?done=saved")


def _raw_proposed(form: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in form.items():
        rule_id, _, field = str(key).rpartition(".")
        if field in FIELDS and rule_id:
            out.setdefault(rule_id, {})[field] = value
    return out


def routes(app: web.Application) -> None:
    app.router.add_get("/patients/{nhs_number}/thresholds", editor)
    app.router.add_post("/patients/{nhs_number}/thresholds", submit)
