"""Sign-in and sign-out pages.

The sign-in form has no session to carry a CSRF token yet, so it uses a double-submit
token: a random value in a SameSite=Strict cookie and the same value in the form. A
successful sign-in ends any session the browser had and starts a new one (a session
value planted before sign-in is worthless after it). Every attempt is audited; too many
recent failures for a user name (or from one address) refuse sign-in without looking at
the password, and that refusal is audited too."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from api.access import Kind
from api.views import CONN, audit
from web.keys import SESSION, SETTINGS, lifetimes, rate_limit, secure_cookies
from web.render import render, see_other
from web.sessions import COOKIE, SIGN_IN_COOKIE, Ended, new_secret, same_token
from web.store import Session, check_sign_in, end_session, load_session, start_session, username_key

NOTICES = {
    "idle": "You were signed out because the page was not used for a while.",
    "absolute": "Your session reached its time limit. Sign in again to carry on.",
    "signed_out": "You have signed out.",
}


def safe_next(target: str | None) -> str | None:
    """Only a path on this site: never another host (``//evil``, ``/\\evil``, ``http:``)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    if any(c in target for c in "\r\n\\") or len(target) > 500:
        return None
    return target


def home_of(kind: Kind) -> str:
    return "/my-readings" if kind is Kind.PATIENT else "/queue"


async def _form(
    request: web.Request, *, error: str | None = None, username: str = "", status: int = 200
) -> web.Response:
    token = new_secret()
    notice = NOTICES.get(request.cookies.get("homeward_notice", ""))
    response = await render(
        request,
        "sign_in.html",
        {
            "title": "Sign in",
            "error": error,
            "notice": None if error else notice,
            "username": username,
            "sign_in_token": token,
            "next": safe_next(request.query.get("next")) or "",
        },
        status=status,
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=secure_cookies(request),
        path="/sign-in",
        max_age=3600,
    )
    response.del_cookie("homeward_notice")
    return response


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    """The form, also for someone signed in (signing in again ends that session)."""
    return await _form(request)


async def sign_in(request: web.Request) -> web.StreamResponse:
    conn = request[CONN]
    settings = request.app[SETTINGS]
    form = await request.post()
    username = str(form.get("username", ""))[:200]
    password = str(form.get("password", ""))
    remote = request.remote
    if not same_token(request.cookies.get(SIGN_IN_COOKIE), str(form.get("sign_in_token", ""))):
        await audit(
            conn,
            None,
            "web_sign_in",
            allowed=False,
            status=403,
            detail={"username": username_key(username), "reason": "sign-in form token missing"},
        )
        return await _form(
            request,
            error="The sign-in form had expired. Enter your details again.",
            username=username,
            status=403,
        )
    now = datetime.now(UTC)
    result = await check_sign_in(
        conn,
        username=username,
        password=password,
        remote=remote,
        now=now,
        limit=rate_limit(settings),
    )
    if not result.ok:
        status = 429 if result.limited else 401
        reason = "too many recent failures" if result.limited else "wrong user name or password"
        await audit(
            conn,
            None,
            "web_sign_in",
            allowed=False,
            status=status,
            patient_id=None,
            detail={"username": username_key(username), "remote": remote, "reason": reason},
        )
        message = (
            "Too many failed sign-ins. Wait a few minutes, then try again."
            if result.limited
            else "The user name or password is not right."
        )
        return await _form(request, error=message, username=username, status=status)
    old = request.cookies.get(COOKIE)
    if old:
        await end_session(conn, old, now=now, why=Ended.REPLACED)
    secret = await start_session(conn, result, now=now, lifetimes=lifetimes(settings))
    session = await load_session(conn, secret, now=now, lifetimes=lifetimes(settings))
    assert isinstance(session, Session)
    who = session.principal
    await audit(
        conn,
        who,
        "web_sign_in",
        allowed=True,
        status=303,
        patient_id=who.patient_id,
        team_id=who.team_id,
        detail={"remote": remote},
    )
    target = safe_next(str(form.get("next", ""))) or home_of(who.kind)
    response = see_other(target)
    response.set_cookie(
        COOKIE,
        secret,
        httponly=True,
        samesite="Strict",
        secure=secure_cookies(request),
        path="/",
        max_age=settings.web_session_max_s,
    )
    response.del_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    secret = request.cookies.get(COOKIE, "")
    await end_session(request[CONN], secret, now=datetime.now(UTC), why=Ended.SIGNED_OUT)
    who = session.principal
    await audit(
        request[CONN],
        who,
        "web_sign_out",
        allowed=True,
        status=303,
        patient_id=who.patient_id,
        team_id=who.team_id,
    )
    response = see_other("/sign-in")
    response.del_cookie(COOKIE)
    response.set_cookie(
        "homeward_notice", "signed_out", httponly=True, samesite="Strict", max_age=60
    )
    return response


async def home(request: web.Request) -> web.StreamResponse:
    return see_other(home_of(request[SESSION].principal.kind))


def routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/sign-in", sign_in_page)
    app.router.add_post("/sign-in", sign_in)
    app.router.add_post("/sign-out", sign_out)
