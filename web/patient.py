"""The patient page for staff: a chart per metric over 7, 30 or 90 days with the
patient's thresholds as bands, their alerts, care plan (every rule with where each value
came from), devices, and late readings to review (closed here).

The page is read through the API's own access check and audit (api/views.py): a
patient the person may not see is the same 404 as one that does not exist, and every
view writes one audit row (``view_patient``) in the page's transaction."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiohttp import web
from psycopg.rows import dict_row

from alerts.careplans import EffectiveRule, ThresholdRuleConfig, effective_rules
from api.access import Kind, PatientRef, Principal, may_close_late_review
from api.views import PRINCIPAL, Refused, audit, patient_in_care
from api.views import Q as API_Q
from homeward.errors import ValidationError
from homeward.metrics import CATALOGUE
from homeward.nhs import normalise_nhs_number
from web.charts import Band, Point, chart
from web.render import render, see_other
from web.store import Q

WINDOWS = {7: "chart_raw", 30: "chart_hourly", 90: "chart_daily"}
_HIDDEN = {"id", "kind", "source", "enabled", "metric", "unit"}


async def patient_of_path(
    request: web.Request, action: str, detail: dict[str, Any]
) -> tuple[Principal, psycopg.AsyncConnection[Any], dict[str, Any]]:
    """The patient named in the path through the API's own check and audit; an NHS
    number that is not even valid is the same 404 page as any other missing patient."""
    try:
        number = normalise_nhs_number(request.match_info["nhs_number"])
    except ValidationError as exc:
        raise Refused("no such patient", 404) from exc
    return await patient_in_care(request, number, action, detail)


def staff_only(request: web.Request) -> None:
    if request[PRINCIPAL].kind is not Kind.STAFF:
        raise Refused("staff only", 404)


def bands_for(rules: dict[str, EffectiveRule], metric: str) -> list[Band]:
    out = []
    for item in rules.values():
        rule = item.rule
        if isinstance(rule, ThresholdRuleConfig) and rule.enabled and rule.metric == metric:
            sign = "≥" if rule.direction == "high" else "≤"
            out.append(
                Band(
                    rule.direction,
                    rule.limit,
                    rule.priority,
                    f"{rule.priority} {sign} {rule.limit:g}",
                )
            )
    return out


async def patient_rules(
    conn: psycopg.AsyncConnection[Any], patient_id: int, conditions: list[str]
) -> tuple[dict[str, EffectiveRule], dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["patient_overrides"], {"patient_id": patient_id})
        row = await cur.fetchone()
    overrides = dict(row["overrides"]) if row else {}
    meta = row or {"version": 0, "overrides": {}}
    return effective_rules(conditions, overrides), meta


async def charts_for(
    conn: psycopg.AsyncConnection[Any],
    patient_id: int,
    rules: dict[str, EffectiveRule],
    *,
    days: int,
    now: datetime,
) -> list[dict[str, Any]]:
    since = now - timedelta(days=days)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            Q[WINDOWS[days]], {"patient_id": patient_id, "since": since, "until": now}
        )
        rows = await cur.fetchall()
    series: dict[str, list[Point]] = defaultdict(list)
    for r in rows:
        series[r["metric"]].append(Point(r["time"], r["value"], r["min"], r["max"]))
    watched = {item.rule.metric for item in rules.values() if getattr(item.rule, "metric", None)}
    out = []
    for metric in sorted(set(series) | (watched & set(CATALOGUE))):
        spec = CATALOGUE.get(metric)
        if spec is None:
            continue
        points = series.get(metric, [])
        out.append(
            {
                "metric": metric,
                "title": spec.display,
                "unit": spec.unit,
                "latest": points[-1] if points else None,
                "svg": chart(
                    title=spec.display,
                    unit=spec.unit,
                    points=points,
                    bands=bands_for(rules, metric),
                    since=since,
                    until=now,
                    possible=spec.possible,
                ),
            }
        )
    return out


def care_plan(rules: dict[str, EffectiveRule]) -> list[dict[str, Any]]:
    rows = []
    for rule_id, item in sorted(rules.items()):
        settings = {k: v for k, v in item.rule.model_dump().items() if k not in _HIDDEN}
        rows.append(
            {
                "rule_id": rule_id,
                "enabled": item.rule.enabled,
                "settings": settings,
                "overridden": set(item.overridden),
                "origin": item.origin,
                "source": item.rule.source,
                "editable": isinstance(item.rule, ThresholdRuleConfig),
            }
        )
    return rows


async def patient_page(request: web.Request) -> web.Response:
    staff_only(request)
    try:
        days = int(request.query.get("days", "7"))
    except ValueError:
        days = 0
    if days not in WINDOWS:
        days = 7
    _, conn, patient = await patient_of_path(request, "view_patient", {"days": days, "via": "web"})
    pid = patient["patient_id"]
    now = datetime.now(UTC)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["patient_details"], {"patient_id": pid})
        details = await cur.fetchone() or {}
        await cur.execute(API_Q["patient_alerts"], {"patient_id": pid, "state": None, "limit": 50})
        alerts = await cur.fetchall()
        await cur.execute(Q["patient_devices"], {"patient_id": pid})
        devices = await cur.fetchall()
        await cur.execute(Q["late_to_review"], {"patient_id": pid})
        reviews = await cur.fetchall()
    rules, meta = await patient_rules(conn, pid, list(details.get("conditions") or []))
    return await render(
        request,
        "patient.html",
        {
            "title": patient["display_name"],
            "patient": patient,
            "details": details,
            "days": days,
            "windows": list(WINDOWS),
            "charts": await charts_for(conn, pid, rules, days=days, now=now),
            "alerts": alerts,
            "devices": devices,
            "reviews": reviews,
            "plan": care_plan(rules),
            "rules_version": meta["version"],
            "now": now,
            "done": request.query.get("done"),
        },
    )


async def close_review(request: web.Request) -> web.Response:
    """Close a late reading's review: someone looked at it."""
    staff_only(request)
    who = request[PRINCIPAL]
    review_id = int(request.match_info["review_id"])
    _, conn, patient = await patient_of_path(
        request, "close_late_review", {"review_id": review_id, "via": "web"}
    )
    decision = may_close_late_review(who, PatientRef(patient["patient_id"], patient["team_id"]))
    if not decision.allowed:
        await audit(
            conn,
            who,
            "close_late_review",
            allowed=False,
            status=404,
            patient_id=patient["patient_id"],
            detail={"review_id": review_id, "reason": decision.reason, "via": "web"},
        )
        raise Refused("no such late reading to review", 404)
    async with conn.cursor() as cur:
        await cur.execute(
            Q["close_review"],
            {
                "review_id": review_id,
                "patient_id": patient["patient_id"],
                "by": who.subject,
                "now": datetime.now(UTC),
            },
        )
        closed = await cur.fetchone()
    if closed is None:
        await audit(
            conn,
            who,
            "close_late_review",
            allowed=True,
            status=404,
            patient_id=patient["patient_id"],
            detail={"review_id": review_id, "refused": "no open review"},
        )
        raise Refused("no such late reading to review", 404)
    return see_other(f"/patients/{patient['nhs_number']}?done=review-closed#late")


def routes(app: web.Application) -> None:
    app.router.add_get("/patients/{nhs_number}", patient_page)
    app.router.add_post("/patients/{nhs_number}/late/{review_id:\\d{1,18}}/close", close_review)
