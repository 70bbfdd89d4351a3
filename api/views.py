"""The API's handlers: the nurse's team queue, a patient's readings and alerts, and who
the caller is. Each runs in one transaction on the request's connection (api/app.py):
the access decision, its audit row and the read commit together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
from aiohttp import web
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError as PydanticValidationError

from api.access import Decision, Kind, PatientRef, Principal, may_read_patient, may_read_queue
from api.params import PatientAlertsQuery, QueueQuery, ReadingsQuery, Resolution
from api.problems import from_http_exception, problem
from api.strict import MAX_BODY_BYTES
from homeward.db.queries import load_queries
from homeward.errors import Conflict, HomewardError, InvalidNhsNumber, NotFound, ValidationError
from homeward.metrics import CATALOGUE
from homeward.nhs import normalise_nhs_number

Q = load_queries(Path(__file__).with_name("queries.sql"))
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)  # set by auth
CONN: web.RequestKey[psycopg.AsyncConnection[Any]] = web.RequestKey("conn")
POOL = web.AppKey("pool", AsyncConnectionPool)

_TEAM_QUEUE = sql.SQL(Q["team_queue"]).format(teams=sql.SQL("a.team_id = %(team_id)s"))
_TEAM_QUEUE_COVERING = sql.SQL(Q["team_queue"]).format(
    teams=sql.SQL("a.team_id = ANY(%(teams)s::text[])")
)
_INSTANT = timedelta(microseconds=1)  # PostgreSQL's time resolution
_READINGS_QUERY: dict[Resolution, str | sql.Composed] = {
    Resolution.RAW: Q["readings_raw"],
    **{
        resolution: sql.SQL(Q["readings_rollup"]).format(rollup=sql.Identifier(view))
        for resolution, view in (
            (Resolution.HOUR, "readings_hourly"),
            (Resolution.DAY, "readings_daily"),
        )
    },
}


class Refused(HomewardError):
    """A request refused and already audited; ``status`` is what the caller is told,
    ``extra`` what the problem adds (``problems`` for a bad body)."""

    def __init__(self, message: str, status: int, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


# What a client's request can be refused with, before or without an access decision.
CLIENT_ERRORS = (
    Refused,
    web.HTTPException,
    PydanticValidationError,
    ValidationError,
    NotFound,
    Conflict,
)


def problems_of(exc: PydanticValidationError) -> list[dict[str, Any]]:
    """Each problem with the parameter or field it concerns; never the value sent."""
    return [
        {"parameter": ".".join(str(p) for p in e["loc"]) or None, "problem": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def client_problem(exc: BaseException) -> web.Response:
    """The JSON problem a client error is answered with."""
    if isinstance(exc, Refused):
        return problem(exc.status, str(exc), **exc.extra)
    if isinstance(exc, web.HTTPException):
        return from_http_exception(exc)
    if isinstance(exc, PydanticValidationError):
        return problem(400, "invalid parameters", problems=problems_of(exc))
    if isinstance(exc, NotFound):
        return problem(404, str(exc))
    if isinstance(exc, Conflict):
        return problem(409, str(exc))
    return problem(400, str(exc))


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, at most ``limit`` bytes (the API's actions take small JSON
    objects; the application's own limit, aiohttp's 1 MiB, is for FHIR Bundles)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
    raw = await request.read()
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    return raw


def printable(text: str, limit: int = 200) -> str:
    """Text safe to keep in the audit log (jsonb holds no NUL): escaped, bounded."""
    clean = text.encode("ascii", "backslashreplace").decode("ascii").replace("\x00", "\\x00")
    return clean if len(clean) <= limit else clean[:limit] + "…"


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
    )


async def audit(
    conn: psycopg.AsyncConnection[Any],
    who: Principal | None,
    action: str,
    *,
    allowed: bool,
    status: int,
    patient_id: int | None = None,
    team_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        Q["audit"],
        {
            "actor": who.actor if who else "anonymous",
            "role": who.role if who else "none",
            "action": action,
            "patient_id": patient_id,
            "team_id": team_id,
            "allowed": allowed,
            "status": status,
            "detail": Jsonb(detail or {}),
        },
    )


async def _subject(
    conn: psycopg.AsyncConnection[Any], match: dict[str, str]
) -> tuple[int | None, str | None, dict[str, Any]]:
    """Whose data a request named in its path (patient id, team, what was named), as far
    as the path can be read."""
    named: dict[str, Any] = {}
    row = None
    async with conn.cursor(row_factory=dict_row) as cur:
        if "nhs_number" in match:
            try:
                number = normalise_nhs_number(match["nhs_number"])
            except InvalidNhsNumber:
                named["nhs_number"] = printable(match["nhs_number"], 40)
            else:
                named["nhs_number"] = number
                await cur.execute(Q["patient_ref"], {"nhs_number": number})
                row = await cur.fetchone()
        elif "alert_id" in match:
            named["alert_id"] = int(match["alert_id"])
            await cur.execute(Q["alert_ref"], {"alert_id": named["alert_id"]})
            row = await cur.fetchone()
        elif "review_id" in match:
            named["review_id"] = int(match["review_id"])
            await cur.execute(Q["review_ref"], {"review_id": named["review_id"]})
            row = await cur.fetchone()
    if row is None:
        return None, None, named
    return row["patient_id"], row["team_id"], named


async def audit_refused_request(
    request: web.Request, action: str, status: int, exc: BaseException
) -> None:
    """A request to ``action`` refused for its input before any access decision: with
    the patient its path names, the problem, and never the values sent."""
    who, conn = request[PRINCIPAL], request[CONN]
    patient_id, team_id, named = await _subject(conn, dict(request.match_info))
    if patient_id is None and who.kind is Kind.PATIENT:
        patient_id, team_id = who.patient_id, who.team_id  # their own request
    detail: dict[str, Any] = {
        "reason": "invalid request",
        "path": printable(request.path),
        **named,
    }
    if isinstance(exc, PydanticValidationError):
        detail["problems"] = problems_of(exc)
    elif not isinstance(exc, web.HTTPException):
        detail["problem"] = printable(str(exc))
    await audit(
        conn,
        who,
        action,
        allowed=False,
        status=status,
        patient_id=patient_id,
        team_id=team_id,
        detail=detail,
    )


async def _patient_in_care(
    request: web.Request, action: str, detail: dict[str, Any]
) -> tuple[Principal, psycopg.AsyncConnection[Any], dict[str, Any]]:
    """The patient named in the path, if the caller may see them; audited either way."""
    number = normalise_nhs_number(request.match_info["nhs_number"])
    return await patient_in_care(request, number, action, detail)


async def patient_in_care(
    request: web.Request, number: str, action: str, detail: dict[str, Any]
) -> tuple[Principal, psycopg.AsyncConnection[Any], dict[str, Any]]:
    """The patient of this NHS number, if the caller may see them; audited either way.
    Unknown and forbidden patients get the same 404, so NHS numbers cannot be probed."""
    who, conn = request[PRINCIPAL], request[CONN]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["patient_ref"], {"nhs_number": number})
        row = await cur.fetchone()
    if row is None:
        decision = Decision(False, "no such patient")
    else:
        ref = PatientRef(row["patient_id"], row["team_id"], frozenset(row["alert_teams"]))
        decision = may_read_patient(who, ref)
    status = 200 if decision.allowed else 404
    await audit(
        conn,
        who,
        action,
        allowed=decision.allowed,
        status=status,
        patient_id=row["patient_id"] if row else None,
        team_id=row["team_id"] if row else None,
        detail={**detail, "reason": decision.reason, "nhs_number": number},
    )
    if not decision.allowed or row is None:
        raise Refused("no such patient among those you may see", 404)
    return who, conn, row


def _patient_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"nhs_number": row["nhs_number"], "name": row["display_name"], "team": row["team_id"]}


async def readings(request: web.Request) -> web.Response:
    """A patient's readings, raw or as hourly or daily rollups, in canonical units."""
    params = ReadingsQuery.from_query(request.query)
    now = datetime.now(UTC)
    since, until = params.window(now)
    detail = {"from": since.isoformat(), "to": until.isoformat(), "resolution": params.resolution}
    _, conn, patient = await _patient_in_care(request, "read_readings", detail)

    async def fetch(since: datetime, until: datetime, limit: int | None) -> list[dict[str, Any]]:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                _READINGS_QUERY[params.resolution],
                {
                    "patient_id": patient["patient_id"],
                    "since": since,
                    "until": until,
                    "metrics": params.metric,
                    "limit": limit,
                },
            )
            return await cur.fetchall()

    rows, next_from = _page(await fetch(since, until, params.limit + 1), params.limit)
    if next_from is not None and not rows:  # a page's worth of readings at one instant
        rows = await fetch(next_from, next_from + _INSTANT, None)
        next_from += _INSTANT
    for r in rows:
        spec = CATALOGUE.get(r["metric"])
        r["unit"] = spec.unit if spec else None
        if "received_at" in r:
            r["age_s"] = round((now - r["time"]).total_seconds())
    return json_response(
        {
            "patient": _patient_view(patient),
            "from": since,
            "to": until,
            "resolution": params.resolution,
            "readings": rows,
            "truncated": next_from is not None,
            "next_from": next_from,
        }
    )


def _page(rows: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], datetime | None]:
    """The rows of a page (``limit + 1`` were fetched) and where the next page starts.
    Readings of one message share their time, so a page ends before an instant it cannot
    hold whole: asked for ``from=next_from``, the next page neither repeats nor skips a
    row. No rows and a ``next_from`` mean the page is that one instant, fetched whole."""
    if len(rows) <= limit:
        return rows, None
    boundary = rows[limit]["time"]  # the first row this page does not return
    return [r for r in rows[:limit] if r["time"] < boundary], boundary


async def patient_alerts(request: web.Request) -> web.Response:
    params = PatientAlertsQuery.from_query(request.query)
    _, conn, patient = await _patient_in_care(request, "read_alerts", {"state": params.state})
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            Q["patient_alerts"],
            {"patient_id": patient["patient_id"], "state": params.state, "limit": params.limit},
        )
        rows = await cur.fetchall()
    return json_response({"patient": _patient_view(patient), "alerts": rows})


async def read_queue(
    conn: psycopg.AsyncConnection[Any],
    who: Principal,
    *,
    team: str | None,
    state: str | None,
    limit: int,
) -> tuple[str, str]:
    """The team's unresolved alerts as a JSON array (built by PostgreSQL), red first then
    oldest first, each with its age; audited. ``Refused`` (403) when the caller may not
    read that queue. Shared by the API and the web app's queue page."""
    team = team or who.team_id
    decision = (
        may_read_queue(who, team) if team else Decision(False, "no team to show the queue of")
    )
    if not decision.allowed or team is None:
        await audit(
            conn,
            who,
            "read_queue",
            allowed=False,
            status=403,
            team_id=team,
            detail={"reason": decision.reason},
        )
        raise Refused(f"not allowed: {decision.reason}", 403)
    async with conn.cursor() as cur:
        await cur.execute(Q["covered_teams"], {"team_id": team})
        covered = [t for (t,) in await cur.fetchall()]
        args: dict[str, Any] = {
            "team_id": team,
            "state": state,
            "limit": limit,
            "now": datetime.now(UTC),
        }
        if covered:
            args["teams"] = [team, *covered]
        await cur.execute(_TEAM_QUEUE_COVERING if covered else _TEAM_QUEUE, args)
        row = await cur.fetchone()
    assert row is not None  # an aggregate: always one row
    alerts_json, patients = row
    await audit(
        conn,
        who,
        "read_queue",
        allowed=True,
        status=200,
        team_id=team,
        detail={"patients": sorted(patients)},
    )
    return team, alerts_json


async def queue(request: web.Request) -> web.Response:
    """The team's unresolved alerts, red first then oldest first, each with its age."""
    params = QueueQuery.from_query(request.query)
    team, alerts_json = await read_queue(
        request[CONN], request[PRINCIPAL], team=params.team, state=params.state, limit=params.limit
    )
    body = b'{"team":%s,"alerts":%s}' % (orjson.dumps(team), alerts_json.encode())
    return web.Response(body=body, content_type="application/json")


async def me(request: web.Request) -> web.Response:
    who = request[PRINCIPAL]
    body: dict[str, Any] = {
        "kind": who.kind,
        "id": who.subject,
        "name": who.name,
        "team": who.team_id,
        "roles": sorted(who.roles) if who.kind is Kind.STAFF else ["patient"],
        "clinical_access": who.clinical,
    }
    if who.kind is Kind.PATIENT:
        await audit(
            request[CONN],
            who,
            "read_identity",
            allowed=True,
            status=200,
            patient_id=who.patient_id,
            team_id=who.team_id,
        )
    return json_response(body)
