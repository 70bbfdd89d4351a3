"""The web app's sign-in and sessions, through the running service: cookies with the
right attributes, rotation at sign-in, idle and absolute expiry, server-side sign-out,
CSRF refused on every form, failed sign-ins audited and rate-limited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from support import make_settings, purge_session, running_service
from web.sessions import COOKIE, digest
from web_support import NHS, PASSWORD, browser, csrf_of, hidden_fields, seed, sign_in


@pytest.fixture
async def base(db_url: str, broker_url: str) -> AsyncIterator[str]:
    seed(db_url)
    settings = make_settings(db_url, broker_url, web_sign_in_failures=3)
    try:
        async with running_service(settings) as service:
            yield f"http://127.0.0.1:{service.http_port}"
    finally:
        purge_session(settings)


def _rows(db_url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query, args or None).fetchall()


async def test_a_page_without_a_session_sends_the_browser_to_sign_in(base: str) -> None:
    async with browser() as http, http.get(f"{base}/queue", allow_redirects=False) as r:
        assert r.status == 303
        assert r.headers["Location"] == "/sign-in?next=/queue"
        async with http.get(f"{base}/sign-in") as page:
            assert page.status == 200
            assert "Content-Security-Policy" in page.headers
            assert "Sign in to Homeward" in await page.text()


async def test_signing_in_sets_a_strict_http_only_cookie_and_rotates_it(
    base: str, db_url: str
) -> None:
    async with browser() as http:
        first = await sign_in(http, base, "deal.mn1")
        assert first.status == 303
        assert first.headers["Location"] == "/queue"
        morsel = first.cookies[COOKIE]
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Strict"
        assert not morsel["secure"]  # plain HTTP here; Secure over TLS (docs/web.md)
        old = morsel.value
        async with http.get(f"{base}/queue", allow_redirects=False) as r:
            assert r.status == 200
            assert "Queue for deal" in await r.text()
        # Signing in again (a planted or an old session) ends the old one on the server.
        second = await sign_in(http, base, "deal.mn1")
        new = second.cookies[COOKIE].value
        assert new != old
    ended = dict(
        _rows(
            db_url,
            "SELECT session_sha256, ended_why FROM web_sessions WHERE staff_id = 'deal.mn1'",
        )
    )
    assert ended[digest(old)] == "replaced by a new sign-in"
    assert ended[digest(new)] is None
    # Only the hash is stored: the cookie's value itself is nowhere in the table.
    assert all(key != old.encode() for key in ended)


async def test_a_wrong_password_is_refused_audited_and_then_rate_limited(
    base: str, db_url: str
) -> None:
    async with browser() as http:
        for _ in range(3):
            r = await sign_in(http, base, "deal.mn1", "not the password")
            assert r.status == 401
            assert COOKIE not in r.cookies
        # The limit (3 here) is reached: even the right password is refused for now.
        limited = await sign_in(http, base, "deal.mn1", PASSWORD)
        assert limited.status == 429
        assert COOKIE not in limited.cookies
        # Another person is not locked out by it.
        assert (await sign_in(http, base, "deal.gp1")).status == 303
    audited = _rows(
        db_url,
        "SELECT allowed, status, detail->>'username', detail->>'reason' FROM audit_log"
        " WHERE action = 'web_sign_in' ORDER BY audit_id",
    )
    assert audited[:4] == [
        *[(False, 401, "deal.mn1", "wrong user name or password")] * 3,
        (False, 429, "deal.mn1", "too many recent failures"),
    ]
    assert audited[4][:2] == (True, 303)


async def test_an_unknown_user_is_refused_like_a_wrong_password(base: str) -> None:
    async with browser() as http:
        r = await sign_in(http, base, "nobody.here", PASSWORD)
        assert r.status == 401
        assert "The user name or password is not right." in await r.text()


async def test_a_patient_signs_in_with_their_nhs_number(base: str) -> None:
    async with browser() as http:
        r = await sign_in(http, base, "943 476 5919")
        assert r.status == 303
        assert r.headers["Location"] == "/my-readings"
        # The team's queue is no page of a patient's: the same 404 as a missing page.
        async with http.get(f"{base}/queue", allow_redirects=False) as q:
            assert q.status == 404


async def test_the_sign_in_form_without_its_token_is_refused(base: str, db_url: str) -> None:
    async with browser() as http:
        r = await http.post(
            f"{base}/sign-in",
            data={"username": "deal.mn1", "password": PASSWORD},
            allow_redirects=False,
        )
        assert r.status == 403
        assert COOKIE not in r.cookies
    assert _rows(db_url, "SELECT count(*) FROM web_sessions") == [(0,)]


async def test_a_form_without_the_csrf_token_changes_nothing(base: str, db_url: str) -> None:
    async with browser() as http:
        await sign_in(http, base, "deal.mn1")
        token = await csrf_of(http, base)
        async with http.post(
            f"{base}/sign-out", data={"csrf_token": "forged"}, allow_redirects=False
        ) as r:
            assert r.status == 403
        async with http.post(f"{base}/sign-out", allow_redirects=False) as r:
            assert r.status == 403
        # Still signed in: the forged sign-out did nothing.
        async with http.get(f"{base}/queue", allow_redirects=False) as r:
            assert r.status == 200
        async with http.post(
            f"{base}/sign-out", data={"csrf_token": token}, allow_redirects=False
        ) as r:
            assert r.status == 303
    refused = _rows(
        db_url,
        "SELECT actor, status FROM audit_log WHERE action = 'web_csrf_refused' ORDER BY audit_id",
    )
    assert refused == [("staff:deal.mn1", 403), ("staff:deal.mn1", 403)]


async def test_sign_out_ends_the_session_on_the_server(base: str, db_url: str) -> None:
    async with browser() as http:
        r = await sign_in(http, base, "deal.mn1")
        secret = r.cookies[COOKIE].value
        token = await csrf_of(http, base)
        async with http.post(
            f"{base}/sign-out", data={"csrf_token": token}, allow_redirects=False
        ) as out:
            assert out.status == 303
    # The old cookie, replayed by another client, is worth nothing now.
    async with browser() as thief:
        thief.cookie_jar.update_cookies({COOKIE: secret})
        async with thief.get(f"{base}/queue", allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"].startswith("/sign-in")
    assert _rows(db_url, "SELECT ended_why FROM web_sessions") == [("signed out",)]


@pytest.mark.parametrize(
    ("column", "shift", "why"),
    [
        ("last_seen_at", "31 minutes", "idle too long"),  # idle: 30 minutes by default
        ("expires_at", "0 seconds", "session too old"),  # absolute: 12 hours after sign-in
    ],
)
async def test_a_session_expires_when_idle_and_at_its_absolute_limit(
    base: str, db_url: str, column: str, shift: str, why: str
) -> None:
    async with browser() as http:
        await sign_in(http, base, "deal.mn1")
        async with http.get(f"{base}/queue", allow_redirects=False) as r:
            assert r.status == 200
        # The session's clock moved on: its last request (or its end) is in the past.
        with psycopg.connect(db_url) as conn:
            conn.execute(
                f"UPDATE web_sessions SET {column} = now() - %s::interval",
                (shift,),
            )
        async with http.get(f"{base}/queue", allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["X-Homeward-Session"] == why
        async with http.get(f"{base}/sign-in") as page:
            assert "Sign in" in await page.text()
    assert _rows(db_url, "SELECT ended_why FROM web_sessions") == [(why,)]


async def test_a_new_password_ends_the_old_sessions(base: str, db_url: str) -> None:
    from datetime import UTC, datetime

    from web.store import set_password

    async with browser() as http:
        await sign_in(http, base, "deal.mn1")
        with psycopg.connect(db_url) as conn:
            set_password(
                conn, now=datetime.now(UTC), password="another long password", staff_id="deal.mn1"
            )
        async with http.get(f"{base}/queue", allow_redirects=False) as r:
            assert r.status == 303
        assert (await sign_in(http, base, "deal.mn1")).status == 401
        assert (await sign_in(http, base, "deal.mn1", "another long password")).status == 303


async def test_next_only_ever_leads_to_a_page_of_this_site(base: str) -> None:
    async with browser() as http:
        async with http.get(f"{base}/sign-in", params={"next": "//evil.example/x"}) as r:
            fields = hidden_fields(await r.text())
        assert fields["next"] == ""
        r2 = await http.post(
            f"{base}/sign-in",
            data={**fields, "next": "//evil.example/", "username": NHS, "password": PASSWORD},
            allow_redirects=False,
        )
        assert r2.headers["Location"] == "/my-readings"
