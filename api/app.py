"""The aiohttp application. Long-lived resources arrive through typed ``web.AppKey``s.

``/health`` is open; everything under ``/api/v1/`` needs a bearer token (api/access.py)
and runs in one database transaction per request, in which the access decision is
audited. Errors become JSON problems (api/problems.py) with the status a client can act
on; every answer carries the security headers. Serve it with :class:`ApiRunner`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from aiohttp import web
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api import actions, device_ingest, late, outcomes, views
from api.access import Kind, Principal, bearer_token, token_digest
from api.fhir import handlers as fhir
from api.openapi import Handler, Operation, document
from api.params import OutcomesQuery, PatientAlertsQuery, QueueQuery, ReadingsQuery
from api.problems import problem, secure
from api.ratelimit import AnonymousAuditLimit
from api.strict import bad_text
from api.views import CLIENT_ERRORS, POOL, client_problem, printable
from homeward.errors import DatabaseUnavailable, ValidationError
from ingest.http_source import HttpSource

log = logging.getLogger(__name__)
StatusProvider = Callable[[], dict[str, Any]]
STATUS: web.AppKey[StatusProvider] = web.AppKey("status")
API_PREFIX = "/api/v1/"
OPENAPI_PATH = f"{API_PREFIX}openapi.json"  # public: the API's shape, no patient data
Observe = Callable[[str, int, float], None]  # route, status, seconds
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format
Clock = Callable[[], float]
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
ANONYMOUS_LIMIT = web.AppKey("anonymous_limit", AnonymousAuditLimit)


async def health(request: web.Request) -> web.Response:
    """200 when the database answers, the broker is connected and the service names no
    problem (a failing, hung or stopped timer…); 503 otherwise, with ``problems`` naming
    each part that is not working."""
    status = request.app[STATUS]()
    database = False
    db_error = None
    failing: int | None = None
    backlog: str | None = None
    try:
        async with request.app[POOL].connection(timeout=2) as conn:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM notifications"
                "        WHERE delivered_at IS NULL AND attempts > 0),"
                " (SELECT count(*) FROM rule_backlog),"
                " (SELECT count(DISTINCT patient_id) FROM rule_backlog),"
                " (SELECT error FROM rule_backlog ORDER BY failed_at DESC LIMIT 1)"
            )
            row = await cur.fetchone()
            failing = int(row[0]) if row else 0
            if row and row[1]:  # readings whose rules failed, kept (any worker's)
                backlog = (
                    f"rules: {row[1]} readings of {row[2]} patients not evaluated, kept for"
                    f" re-evaluation at each patient's next reading (last error: {row[3]})"
                )
        database = True
    except Exception as exc:  # any failure means "not healthy"; the reason is reported
        db_error = str(exc)
    mqtt = bool(status.get("mqtt", {}).get("connected"))
    problems = [
        *([] if database else [f"database: {db_error}"]),
        *([] if mqtt else ["broker: not connected"]),
        *([backlog] if backlog else []),
        *status.get("problems", []),  # the parts the service names (timers, …)
    ]
    healthy = not problems
    body = {
        "status": "ok" if healthy else "degraded",
        "database": {"connected": database, "error": db_error},
        "notifications_failing": failing,  # a failing channel is visible, never silent
        **status,
        "problems": problems,
        "time": time.time(),
    }
    return web.json_response(body, status=200 if healthy else 503)


async def _secure_headers(_: web.Request, response: web.StreamResponse) -> None:
    secure(response.headers, page=response.content_type == "text/html")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Our errors → JSON problems; nothing else of an exception reaches the client.
    (A redirect raised as aiohttp's ``HTTPException`` — a page's — passes through.)"""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return client_problem(exc)
    except CLIENT_ERRORS as exc:
        return client_problem(exc)
    except (psycopg.OperationalError, PoolTimeout, DatabaseUnavailable) as exc:
        # The driver's error, or ours once a store has translated it (wrap_exceptions):
        # either way the client may retry, and nothing of the request was committed.
        log.warning("API request failed, database unavailable: %s", exc)
        return problem(503, "the database is unavailable; try again shortly")
    except Exception:
        log.exception("API request failed: %s %s", request.method, printable(request.path))
        return problem(500, "internal error; it has been logged")


async def _principal(conn: psycopg.AsyncConnection[Any], token: str) -> Principal | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            views.Q["principal"], {"digest": token_digest(token), "now": datetime.now(UTC)}
        )
        row = await cur.fetchone()
    if row is None:
        return None
    return Principal(
        kind=Kind(row["kind"]),
        subject=row["subject"],
        name=row["name"],
        team_id=row["team_id"],
        roles=frozenset(row["roles"]),
        patient_id=row["patient_id"],
    )


def _bad_request_text(request: web.Request) -> str | None:
    """A NUL or a lone surrogate in the path or the query string (PostgreSQL stores
    neither), named; ``None`` when the text is clean."""
    if (problem_ := bad_text(request.path)) is not None:
        return f"the path holds {problem_}"
    for key, value in request.query.items():
        if (problem_ := bad_text(key) or bad_text(value)) is not None:
            return f"the query string holds {problem_}"
    return None


async def _audit_anonymous(
    request: web.Request, conn: psycopg.AsyncConnection[Any], reason: str
) -> None:
    """The refusal in full, or — past the client's limit for the window — counted."""
    client = printable(request.remote or "unknown", 64)
    now = request.app[CLOCK]()
    verdict = request.app[ANONYMOUS_LIMIT].decide(client, now)
    if verdict.audit:
        await views.audit(
            conn,
            None,
            "authenticate",
            allowed=False,
            status=401,
            detail={"path": printable(request.path), "reason": reason, "client": client},
        )
        return
    await conn.execute(
        views.Q["count_dropped"],
        {
            "client": verdict.client,
            "window_start": datetime.fromtimestamp(verdict.window_start, UTC),
            "now": datetime.fromtimestamp(now, UTC),
        },
    )


@web.middleware
async def authenticated(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under /api/v1/: a valid token, one connection and one transaction per request.
    A request without a valid token is refused with 401 and audited as anonymous (at
    most ROWS_PER_WINDOW rows a window per client address; the rest counted). A request
    refused for its input (400, 413) is audited with the endpoint's action."""
    in_api = (
        request.path.startswith(API_PREFIX)
        and request.path != OPENAPI_PATH
        and not device_ingest.is_device_path(request.path)  # devices: their own credential
    )
    if not (in_api or fhir.needs_token(request.method, request.path)):
        return await handler(request)
    token = bearer_token(request.headers.get("Authorization"))
    async with request.app[POOL].connection(timeout=5) as conn, conn.transaction():
        who = await _principal(conn, token) if token else None
        if who is None:
            reason = "no bearer token" if token is None else "unknown, expired or revoked token"
            await _audit_anonymous(request, conn, reason)
            return problem(401, f"authentication required: {reason}")
        request[views.PRINCIPAL] = who
        request[views.CONN] = conn
        try:
            if (bad := _bad_request_text(request)) is not None:
                raise ValidationError(bad)
            return await handler(request)
        except views.Refused as exc:  # the refusal is audited: commit it, then answer
            return problem(exc.status, str(exc), **exc.extra)
        except CLIENT_ERRORS as exc:
            response = client_problem(exc)
            action = request.match_info.route.name
            if action is not None:  # an endpoint (an unknown path is no one's data)
                await views.audit_refused_request(request, action, response.status, exc)
            return response


@web.middleware
async def fhir_outcomes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under /fhir, every error is an OperationOutcome (application/fhir+json)."""
    if request.path != fhir.PREFIX and not request.path.startswith(f"{fhir.PREFIX}/"):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own: unknown path, wrong method
        return fhir.outcome(exc.status, exc.reason)
    if (
        response.status < 400
        or not isinstance(response, web.Response)
        or not response.body
        or response.content_type == fhir.CONTENT_TYPE  # already an OperationOutcome
    ):
        return response
    assert isinstance(response.body, bytes)
    body = orjson.loads(response.body)
    problems = tuple(f"{p.get('parameter')}: {p.get('problem')}" for p in body.get("problems", ()))
    return fhir.outcome(response.status, str(body.get("error", response.reason)), problems)


def _operations() -> list[Operation]:
    patient = f"{API_PREFIX}patients/{{nhs_number}}"
    ops = [
        Operation("GET", f"{API_PREFIX}me", views.me, "Who the token speaks for", "read_identity"),
        Operation(
            "GET",
            f"{API_PREFIX}queue",
            views.queue,
            "The team's unresolved alerts, red first, oldest first",
            "read_queue",
            query=QueueQuery,
            statuses=(200, 400, 401, 403, 503),
        ),
        Operation(
            "GET",
            f"{patient}/readings",
            views.readings,
            "A patient's readings, raw or rolled up by hour or day",
            "read_readings",
            query=ReadingsQuery,
            statuses=(200, 400, 401, 404, 503),
        ),
        Operation(
            "GET",
            f"{patient}/alerts",
            views.patient_alerts,
            "A patient's alerts, newest first",
            "read_alerts",
            query=PatientAlertsQuery,
            statuses=(200, 400, 401, 404, 503),
        ),
    ]
    ops += [
        Operation(
            "GET",
            f"{API_PREFIX}late-reviews",
            late.late_reviews,
            "The team's late readings for review, oldest first",
            "read_late_reviews",
            query=late.LateReviewsQuery,
            statuses=(200, 400, 401, 403, 503),
        ),
        Operation(
            "POST",
            f"{API_PREFIX}late-reviews/{{review_id:\\d{{1,18}}}}/close",
            late.close_late_review,
            "Close a late reading's review, with an optional note",
            "close_late_review",
            body=late.CloseBody,
            statuses=(200, 400, 401, 404, 409, 413, 503),
        ),
    ]
    ops.append(
        Operation(
            "GET",
            f"{API_PREFIX}outcomes",
            outcomes.outcomes,
            "Aggregate outcomes per team or locality (small numbers suppressed)",
            outcomes.ACTION,
            query=OutcomesQuery,
            statuses=(200, 400, 401, 403, 503),
        )
    )
    for name, (body, _) in actions.ACTIONS.items():
        ops.append(
            Operation(
                "POST",
                f"{API_PREFIX}alerts/{{alert_id:\\d{{1,18}}}}/{name}",
                actions.handler(name),
                f"{name.capitalize()} an alert",
                actions.action_name(name),
                body=body,
                statuses=(200, 400, 401, 404, 409, 413, 503),
            )
        )
    return ops


def create_app(
    pool: AsyncConnectionPool,
    status: StatusProvider,
    *,
    clock: Clock = time.time,
    ingest: HttpSource | None = None,
    device_posts_per_minute: int = 120,
    metrics: Callable[[], Awaitable[bytes]] | None = None,
    observe: Observe | None = None,
) -> web.Application:
    """The API; ``clock`` (seconds since the epoch) times the anonymous audit limit;
    ``ingest`` takes readings posted by devices (without it they are answered 503);
    ``metrics`` renders ``GET /metrics``; ``observe`` is told each answer's route, status
    and duration."""
    middlewares = [fhir_outcomes, errors, authenticated]
    if observe is not None:
        middlewares.insert(0, _timed(observe))
    app = web.Application(middlewares=middlewares)  # aiohttp's 1 MiB; actions take 64 KiB
    app[POOL] = pool
    app[STATUS] = status
    app[CLOCK] = clock
    app[ANONYMOUS_LIMIT] = AnonymousAuditLimit()
    app.on_response_prepare.append(_secure_headers)
    app.router.add_get("/health", health)
    operations = _operations()
    spec = orjson.dumps(document(operations))

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=spec, content_type="application/json")

    app.router.add_get(OPENAPI_PATH, openapi)
    for op in operations:
        app.router.add_route(op.method, op.path, op.handler, name=op.action)
    fhir.add_routes(app)
    if ingest is not None:
        app[device_ingest.HTTP_INGEST] = ingest
    app[device_ingest.LIMIT] = device_ingest.DevicePostLimit(device_posts_per_minute)
    app.router.add_post(device_ingest.PATH, device_ingest.post_readings)
    if metrics is not None:
        render = metrics

        async def prometheus(_: web.Request) -> web.Response:
            return web.Response(body=await render(), headers={"Content-Type": METRICS_TYPE})

        app.router.add_get("/metrics", prometheus)
    return app


def _timed(observe: Observe) -> Any:
    @web.middleware
    async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Each answer's route (its name, or its path pattern; never the path itself,
        which holds NHS numbers), status and duration, for /metrics."""
        began = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = request.match_info.route
            name = route.name or (route.resource.canonical if route.resource else "unmatched")
            observe(name, status, time.perf_counter() - began)

    return timed


class _ProblemRequestHandler(web.RequestHandler):
    """aiohttp's answers to what never reaches the application — a malformed request
    line or header, a header too large — as fixed-text JSON problems: its own text
    quotes the offending bytes, which may be a bearer token."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; refuses if already sent
        response = problem(status)
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer protocol errors with JSON problems.
    Serve the API with it (service/wiring.py does), never with a bare ``AppRunner``."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer
        return server
