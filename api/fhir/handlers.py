"""The FHIR R4 read API under ``/fhir`` (docs/fhir.md).

Same bearer tokens, same access decisions (api/access.py) and the same audit as the rest
of the API: each handler runs in the request's transaction (api/app.py), and a patient
the caller may not see is the same 404 as one who does not exist — in a search, the same
empty Bundle. Errors are OperationOutcomes (``outcomes`` middleware in api/app.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from psycopg import sql
from psycopg.rows import dict_row

from api import views
from api.fhir import intake, resources, search
from api.fhir.capability import capability_statement
from api.openapi import Handler
from homeward.db.queries import load_queries

PREFIX = "/fhir"
METADATA_PATH = f"{PREFIX}/metadata"
CONTENT_TYPE = "application/fhir+json"
Q = load_queries(Path(__file__).with_name("queries.sql"))
_OBSERVATIONS = {
    descending: sql.SQL(Q["observations"]).format(
        beyond=sql.SQL("<" if descending else ">"),
        direction=sql.SQL("DESC" if descending else "ASC"),
    )
    for descending in (False, True)
}


def fhir_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=CONTENT_TYPE)


def _base(request: web.Request) -> str:
    return f"{request.url.origin()}{PREFIX}"


def _pairs(request: web.Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query.items()]


async def _rows(request: web.Request, query: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    async with request[views.CONN].cursor(row_factory=dict_row) as cur:
        await cur.execute(query, args)
        return await cur.fetchall()


async def metadata(request: web.Request) -> web.Response:
    return fhir_response(capability_statement(_base(request), datetime.now(UTC)))


async def patient_read(request: web.Request) -> web.Response:
    problems: list[str] = []
    number = search.patient_number(request.match_info["nhs_number"], problems)
    if problems:
        raise search.SearchError(problems)
    _, _, row = await views.patient_in_care(request, number, "fhir_read_patient", {})
    return fhir_response(resources.patient(row))


async def patient_search(request: web.Request) -> web.Response:
    number = search.patient_identifier(request.query)
    try:
        _, _, row = await views.patient_in_care(request, number, "fhir_search_patient", {})
        found = [resources.patient(row)]
    except views.Refused:  # audited; the same empty answer for unknown and forbidden
        found = []
    self_url, _ = search.page_links(f"{_base(request)}/Patient", _pairs(request), None)
    return fhir_response(resources.bundle(found, _base(request), self_url, None))


async def observation_search(request: web.Request) -> web.Response:
    params = search.observation_search(request.query)
    detail = {
        "from": params.since.isoformat(),
        "to": params.until.isoformat(),
        "codes": sorted(params.kinds) if params.kinds is not None else None,
    }
    _, _, patient = await views.patient_in_care(
        request, params.nhs_number, "fhir_search_observations", detail
    )
    since, until = params.window()
    after = params.cursor
    rows = await _rows(
        request,
        _OBSERVATIONS[params.descending],
        {
            "patient_id": patient["patient_id"],
            "since": since,
            "until": until,
            "kinds": sorted(params.kinds) if params.kinds is not None else None,
            "after_time": after.time if after else None,
            "after_device": after.device_id if after else None,
            "after_msg": after.msg_id if after else None,
            "after_kind": after.kind if after else None,
            "limit": params.count + 1,
        },
    )
    more = len(rows) > params.count
    rows = rows[: params.count]
    cursor = None
    if more:
        last = rows[-1]
        cursor = search.Cursor(last["time"], last["device_id"], last["msg_id"], last["kind"])
    self_url, next_url = search.page_links(f"{_base(request)}/Observation", _pairs(request), cursor)
    entries = [resources.observation(r, patient["nhs_number"]) for r in rows]
    return fhir_response(resources.bundle(entries, _base(request), self_url, next_url))


async def observation_lastn(request: web.Request) -> web.Response:
    params = search.lastn_search(request.query)
    detail = {"codes": sorted(params.kinds) if params.kinds else None, "max": params.most}
    _, _, patient = await views.patient_in_care(
        request, params.nhs_number, "fhir_lastn_observations", detail
    )
    rows = await _rows(
        request,
        Q["lastn"],
        {
            "patient_id": patient["patient_id"],
            "kinds": sorted(params.kinds) if params.kinds is not None else None,
            "most": params.most,
        },
    )
    entries = [resources.observation(r, patient["nhs_number"]) for r in rows]
    self_url, _ = search.page_links(f"{_base(request)}/Observation/$lastn", _pairs(request), None)
    return fhir_response(resources.bundle(entries, _base(request), self_url, None))


def _patient_search(
    kind: str, query: str, build: Callable[[dict[str, Any], str], resources.Json]
) -> Handler:
    """``GET /fhir/{kind}?patient=…``: every row of ``query`` for one patient in care."""

    async def handler(request: web.Request) -> web.Response:
        number = search.patient_of(request.query)
        action = f"fhir_search_{kind.lower()}s"
        _, _, patient = await views.patient_in_care(request, number, action, {})
        rows = await _rows(request, Q[query], {"patient_id": patient["patient_id"]})
        entries = [build(r, patient["nhs_number"]) for r in rows]
        self_url, _ = search.page_links(f"{_base(request)}/{kind}", _pairs(request), None)
        return fhir_response(resources.bundle(entries, _base(request), self_url, None))

    return handler


device_search = _patient_search("Device", "patient_devices", resources.device)
flag_search = _patient_search("Flag", "patient_flags", resources.flag)


# path → (handler, its action: the route's name, which the audit of a request refused
# for its input and the API's metrics use)
ROUTES: dict[str, tuple[Handler, str]] = {
    METADATA_PATH: (metadata, "fhir_metadata"),
    f"{PREFIX}/Patient": (patient_search, "fhir_search_patient"),
    f"{PREFIX}/Patient/{{nhs_number}}": (patient_read, "fhir_read_patient"),
    f"{PREFIX}/Observation": (observation_search, "fhir_search_observations"),
    f"{PREFIX}/Observation/$lastn": (observation_lastn, "fhir_lastn_observations"),
    f"{PREFIX}/Device": (device_search, "fhir_search_devices"),
    f"{PREFIX}/Flag": (flag_search, "fhir_search_flags"),
}


def add_routes(app: web.Application) -> None:
    for path, (handler, action) in ROUTES.items():
        app.router.add_get(path, handler, name=action)
    intake.add_routes(app, PREFIX)


def needs_token(method: str, path: str) -> bool:
    """Reads need a person's bearer token; posts are devices' (their own credential)."""
    return method != "POST" and path.startswith(f"{PREFIX}/") and path != METADATA_PATH


def outcome(status: int, message: str, problems: tuple[str, ...] = ()) -> web.Response:
    response = fhir_response(resources.operation_outcome(status, message, problems), status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="homeward"'
    return response
