"""The patient's own view, in plain language: their readings as charts, their targets
("your nurse would like your blood pressure to stay under 150 mmHg"), what happens when
a reading is out of range, the messages their devices were sent, and when their next
readings are due. Only their own record: ``may_read_patient`` decides, as for the API,
and the view is audited (``view_own_record``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from psycopg.rows import dict_row

from alerts.careplans import EffectiveRule, MissedReadingConfig, ThresholdRuleConfig
from api.access import Kind, PatientRef, may_read_patient
from api.views import CONN, PRINCIPAL, Refused, audit
from homeward.metrics import CATALOGUE
from web.patient import charts_for, patient_rules
from web.render import render
from web.store import Q

UNITS = {"mm[Hg]": "mmHg", "Cel": "°C", "kg": "kg", "%": "%", "/min": "beats a minute"}


def _unit(unit: str) -> str:
    return UNITS.get(unit, unit)


def targets(rules: dict[str, EffectiveRule]) -> list[str]:
    """One sentence per metric and direction: the first limit that tells the team."""
    first: dict[tuple[str, str], ThresholdRuleConfig] = {}
    for item in rules.values():
        rule = item.rule
        if not isinstance(rule, ThresholdRuleConfig) or not rule.enabled:
            continue
        key = (rule.metric, rule.direction)
        held = first.get(key)
        nearer = held is None or (
            rule.limit < held.limit if rule.direction == "high" else rule.limit > held.limit
        )
        if nearer:
            first[key] = rule
    out = []
    for (metric, direction), rule in sorted(first.items()):
        name = CATALOGUE[metric].display.lower()
        word = "under" if direction == "high" else "above"
        out.append(
            f"Your nurse would like your {name} to stay {word} {rule.limit:g} {_unit(rule.unit)}."
        )
    return out


def due(rules: dict[str, EffectiveRule]) -> list[str]:
    out = []
    for item in rules.values():
        rule = item.rule
        if isinstance(rule, MissedReadingConfig) and rule.enabled:
            name = (
                CATALOGUE[rule.metric].display.lower() if rule.metric in CATALOGUE else rule.metric
            )
            out.append(f"Your {name} reading each day by {rule.due}.")
    return sorted(out)


async def own_view(request: web.Request) -> web.Response:
    who, conn = request[PRINCIPAL], request[CONN]
    if who.kind is not Kind.PATIENT or who.patient_id is None:
        raise Refused("patients only", 404)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["own_record"], {"patient_id": who.patient_id})
        me = await cur.fetchone()
        if me is None:
            raise Refused("no such patient", 404)
        decision = may_read_patient(who, PatientRef(me["patient_id"], me["team_id"]))
        await audit(
            conn,
            who,
            "view_own_record",
            allowed=decision.allowed,
            status=200 if decision.allowed else 404,
            patient_id=me["patient_id"],
            team_id=me["team_id"],
            detail={"reason": decision.reason, "via": "web"},
        )
        if not decision.allowed:
            raise Refused("no such patient", 404)
        await cur.execute(Q["own_messages"], {"patient_id": me["patient_id"]})
        messages = await cur.fetchall()
    rules, _ = await patient_rules(conn, me["patient_id"], list(me["conditions"]))
    charts = await charts_for(conn, me["patient_id"], rules, days=30, now=datetime.now(UTC))
    context: dict[str, Any] = {
        "title": "Your readings",
        "me": me,
        "charts": charts,
        "targets": targets(rules),
        "due": due(rules),
        "messages": messages,
    }
    return await render(request, "own.html", context)


def routes(app: web.Application) -> None:
    app.router.add_get("/my-readings", own_view)
