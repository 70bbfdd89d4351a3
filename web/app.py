"""The web app's wiring: sessions on every page, CSRF on every form, the pages' routes,
the design system's files served from the project's own install (docs/web.md).

``setup(app, settings)`` adds the web app to the API's aiohttp application. A page runs
like an API request: one connection and one transaction, in which the session is looked
up, the access decision (api/access.py) is made and audited, and the page is read. A
refusal of patient data is the same 404 page as a missing patient.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import PoolTimeout

from api.views import CONN, POOL, PRINCIPAL, Refused, audit
from homeward.config import Settings
from homeward.errors import DatabaseUnavailable, HomewardError
from web import alert, auth, own, pages, patient, stream, thresholds
from web.keys import HUB, SESSION, SETTINGS, lifetimes
from web.live import LiveHub
from web.render import render, see_other
from web.sessions import COOKIE, CSRF_FIELD, Ended, same_token
from web.store import Session, load_session

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC = Path(__file__).with_name("static")
# Paths the web app answers without a session, and those it leaves alone.
OPEN_PATHS = frozenset({"/sign-in"})
# The web app's own paths; everything else (/api/, /fhir, /health, /metrics, the static
# files) is left to the application it was added to.
OUR_PATHS = frozenset({"/", "/sign-in", "/sign-out", "/my-readings"})
OUR_PREFIXES = ("/queue", "/alerts/", "/patients/")
# Pages that stream: the session is checked in a transaction of its own, then released.
STREAMING = frozenset({"/queue/events"})
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
    " font-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self';"
    " base-uri 'none'; object-src 'none'"
)


def _headers(response: web.StreamResponse) -> web.StreamResponse:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _sign_in_redirect(request: web.Request, why: Ended | None) -> web.Response:
    target = "/sign-in"
    if request.method == "GET" and request.path != "/":
        target += f"?next={request.rel_url.path_qs}"
    response = see_other(target)
    if why is not None:
        response.headers["X-Homeward-Session"] = why.value  # why, for tests and logs
        response.set_cookie(
            "homeward_notice", why.name.lower(), httponly=True, samesite="Strict", max_age=60
        )
    response.del_cookie(COOKIE)
    return response


async def _session(
    request: web.Request, conn: psycopg.AsyncConnection[Any]
) -> Session | Ended | None:
    secret = request.cookies.get(COOKIE)
    if not secret or len(secret) > 100:
        return None
    now = datetime.now(UTC)
    return await load_session(conn, secret, now=now, lifetimes=lifetimes(request.app[SETTINGS]))


async def _csrf_ok(request: web.Request, session: Session) -> bool:
    given = request.headers.get("X-CSRF-Token")
    if given is None:
        form = await request.post()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    return same_token(session.csrf_token, given)


async def _refuse_csrf(
    request: web.Request, conn: psycopg.AsyncConnection[Any], who: Any
) -> web.Response:
    await audit(
        conn,
        who,
        "web_csrf_refused",
        allowed=False,
        status=403,
        detail={"path": request.path, "method": request.method},
    )
    return await render(
        request,
        "error.html",
        {"title": "This form has expired", "message": "Go back, reload the page and try again."},
        status=403,
    )


@web.middleware
async def pages_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path not in OUR_PATHS and not request.path.startswith(OUR_PREFIXES):
        return await handler(request)
    try:
        return _headers(await _page(request, handler))
    except (psycopg.OperationalError, PoolTimeout, DatabaseUnavailable) as exc:
        log.warning("page failed, database unavailable: %s", exc)
        return _headers(
            await render(
                request,
                "error.html",
                {"title": "Homeward is unavailable", "message": "Try again in a minute."},
                status=503,
            )
        )


async def _page(request: web.Request, handler: Handler) -> web.StreamResponse:
    pool = request.app[POOL]
    if request.path in STREAMING:
        async with pool.connection(timeout=5) as conn, conn.transaction():
            session = await _session(request, conn)
        if not isinstance(session, Session):
            return _sign_in_redirect(request, session)
        request[SESSION] = session
        request[PRINCIPAL] = session.principal
        return await handler(request)
    async with pool.connection(timeout=5) as conn, conn.transaction():
        request[CONN] = conn
        if request.path in OPEN_PATHS:
            session = await _session(request, conn)
            if isinstance(session, Session):
                request[SESSION] = session
                request[PRINCIPAL] = session.principal
            return await _guarded(request, handler)
        session = await _session(request, conn)
        if not isinstance(session, Session):
            if request.method != "GET":
                return await _refuse_csrf(request, conn, None)
            return _sign_in_redirect(request, session)
        request[SESSION] = session
        request[PRINCIPAL] = session.principal
        if request.method != "GET" and not await _csrf_ok(request, session):
            return await _refuse_csrf(request, conn, session.principal)
        return await _guarded(request, handler)


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Our refusals as pages; a refusal's audit row commits with the transaction."""
    try:
        return await handler(request)
    except Refused as exc:
        status = 404 if exc.status in (403, 404) else exc.status
        return await not_found(request) if status == 404 else await _problem(request, exc, status)
    except web.HTTPNotFound:
        return await not_found(request)  # a page, not the API's JSON problem
    except web.HTTPException:
        raise
    except HomewardError as exc:
        return await _problem(request, exc, 400)


async def _problem(request: web.Request, exc: Exception, status: int) -> web.Response:
    return await render(
        request,
        "error.html",
        {"title": "That could not be done", "message": str(exc)},
        status=status,
    )


async def not_found(request: web.Request) -> web.Response:
    return await render(
        request,
        "error.html",
        {
            "title": "Page not found",
            "message": "There is no such page among those you may see. "
            "If you typed the address, check it is correct.",
        },
        status=404,
    )


def assets_dir(settings: Settings) -> Path:
    if settings.web_assets_dir is not None:
        return settings.web_assets_dir
    return Path(__file__).parents[1] / "node_modules" / "nhsuk-frontend" / "dist" / "nhsuk"


def setup(app: web.Application, settings: Settings) -> None:
    """Add the web app to the API's application (before it starts)."""
    app[SETTINGS] = settings
    app.middlewares.append(pages_middleware)
    nhsuk = assets_dir(settings)
    if (nhsuk / "nhsuk-frontend.min.css").is_file():
        app.router.add_static("/static/nhsuk/", nhsuk)
        app.router.add_static("/assets/", nhsuk / "assets")
    else:  # the pages still work, unstyled; `make install` runs npm ci
        log.warning("nhsuk-frontend not installed at %s (run `make install`)", nhsuk)
    app.router.add_static("/static/homeward/", STATIC)
    auth.routes(app)
    pages.routes(app)
    patient.routes(app)
    thresholds.routes(app)
    own.routes(app)
    alert.routes(app)
    stream.routes(app)

    async def start_hub(app: web.Application) -> None:
        app[HUB] = LiveHub(app[SETTINGS].dsn)
        app[HUB].start()

    async def stop_hub(app: web.Application) -> None:
        await app[HUB].stop()

    app.on_startup.append(start_hub)
    app.on_shutdown.append(stop_hub)
