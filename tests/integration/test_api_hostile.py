"""The API against a hostile or clumsy client, over real HTTP against a real PostgreSQL:
NUL characters and times at the calendar's edges, refused attempts on patient data,
strict types, repeated keys, empty filters, the security headers, aiohttp's own errors
(which must never echo a header), and the anonymous audit limit (issue 12, items 8–15)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
import pytest
from api_support import (  # fixtures: api, seeded, clock
    DEAL_NHS,
    Api,
    FrozenClock,
    alert_id,
    api,
    audit_rows,
    clock,
    post,
    seeded,
)

from api.ratelimit import ROWS_PER_WINDOW, WINDOW_S

__all__ = ["api", "clock", "seeded"]

PROBLEM = "application/problem+json"


def last_audit(db_url: str) -> tuple[Any, ...]:
    return audit_rows(db_url)[-1]


def alert_unchanged(db_url: str, alert: int) -> tuple[Any, ...] | None:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT state, snoozed_until, (SELECT count(*) FROM alert_events WHERE alert_id = %s)"
            " FROM alerts WHERE alert_id = %s",
            (alert, alert),
        ).fetchone()


async def raw_get(api: Api, target: str, who: str) -> tuple[int, dict[str, Any], str]:
    """A GET whose target is sent exactly as written (``%00`` stays ``%00``)."""
    from yarl import URL

    url = URL(f"{api.base}{target}", encoded=True)
    headers = {"Authorization": f"Bearer {api.tokens[who]}"}
    async with api.session.get(url, headers=headers) as r:
        return r.status, await r.json(content_type=None), r.content_type


@pytest.mark.parametrize(
    ("target", "action"),
    [
        ("queue?team=de%00al", "read_queue"),
        (f"patients/{DEAL_NHS}/readings?metric=systolic_bp%00", "read_readings"),
        (f"patients/{DEAL_NHS}%00/alerts", "read_alerts"),
        (f"patients/{DEAL_NHS}/readings?from=2026-12-01T00:00:00%00Z", "read_readings"),
    ],
)
async def test_a_nul_in_the_path_or_query_is_a_400_problem_and_audited(
    api: Api, db_url: str, seeded: dict[str, Any], target: str, action: str
) -> None:
    status, body, content_type = await raw_get(api, target, "deal.mn1")
    assert (status, content_type) == (400, PROBLEM)
    assert "NUL" in body["detail"]
    actor, logged, patient_id, allowed, code, detail = last_audit(db_url)
    assert (actor, logged, allowed, code) == ("staff:deal.mn1", action, False, 400)
    assert "\x00" not in orjson.dumps(detail).decode()
    if "patients/" in target:  # whose data the refused request named
        assert patient_id == seeded["deal"] or DEAL_NHS in detail["nhs_number"]


async def test_a_nul_in_a_path_no_endpoint_has_is_a_400_problem(api: Api, db_url: str) -> None:
    status, body, content_type = await raw_get(api, "me%00", "deal.mn1")
    assert (status, content_type) == (400, PROBLEM)
    assert body["status"] == 400
    assert audit_rows(db_url) == []  # no endpoint: nobody's data


@pytest.mark.parametrize(
    "body",
    [
        {"text": "rang\u0000 back"},
        {"text\u0000": "rang back"},
        b'{"text": "rang \\ud800 back"}',  # a lone surrogate: not Unicode
    ],
)
async def test_a_nul_or_a_lone_surrogate_in_a_body_is_a_400_and_audited(
    api: Api, db_url: str, seeded: dict[str, Any], body: Any
) -> None:
    red = alert_id(db_url, seeded["deal"], "red")
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    status, answer = await post(api, f"alerts/{red}/notes", "deal.mn1", raw=raw)
    assert status == 400
    assert answer["status"] == 400
    actor, action, patient_id, _allowed, code, detail = last_audit(db_url)
    assert (actor, action, patient_id, code) == (
        "staff:deal.mn1",
        "note_alert",
        seeded["deal"],
        400,
    )
    assert detail["refused"].startswith("the body holds")
    assert alert_unchanged(db_url, red) == ("open", None, 0)


@pytest.mark.parametrize(
    "params",
    [
        {"from": "0001-01-01T00:00:00+14:00"},  # before year 1 in UTC
        {"to": "9999-12-31T23:59:59-14:00"},  # after year 9999 in UTC
        {"to": "0001-01-01T00:00:00Z"},  # the default window would start before year 1
        {"from": "1969-12-31T23:59:59Z"},
        {"from": "0", "to": "1000"},  # Unix seconds are not times here
        {"from": "2026-12-01"},  # a date alone
        {"from": "2026-12-01T08:00Z"},  # no seconds
        {"from": "2026-02-30T08:00:00Z"},  # no such day
        {"from": "2026-12-01T08:00:00+24:00"},  # no such offset
        {"limit": "5e1"},
        {"limit": "+50"},
        {"limit": "50.0"},
        {"limit": "true"},
        {"metric": ""},  # an empty filter is not "every metric"
        {"metric": "systolic_bp,"},
        {"metric": ["systolic_bp", ""]},
    ],
)
async def test_bad_times_counts_and_empty_filters_are_a_400_and_audited(
    api: Api, db_url: str, seeded: dict[str, Any], params: dict[str, Any]
) -> None:
    status, body, response = await api.get(f"patients/{DEAL_NHS}/readings", "deal.mn1", **params)
    assert (status, response.content_type) == (400, PROBLEM), body
    assert body["problems"] or body["detail"]
    actor, action, patient_id, allowed, code, detail = last_audit(db_url)
    assert (actor, action, patient_id, allowed, code) == (
        "staff:deal.mn1",
        "read_readings",
        seeded["deal"],
        False,
        400,
    )
    assert detail["reason"] == "invalid request"


async def test_rfc3339_times_with_any_offset_are_read(api: Api) -> None:
    for since in ("2026-11-20T00:00:00Z", "2026-11-20T01:00:00.5+01:00", "2026-11-20t00:00:00z"):
        status, body, _ = await api.get(
            f"patients/{DEAL_NHS}/readings",
            "deal.mn1",
            **{"from": since, "to": "2026-12-19T00:00:00Z"},
        )
        assert status == 200, (since, body)


async def test_a_repeated_parameter_is_a_400_naming_it(api: Api) -> None:
    status, body, _ = await api.get("queue", "deal.mn1", state=["open", "acknowledged"])
    assert status == 400
    assert "'state' is given 2 times" in body["detail"]


async def test_refused_actions_on_patient_data_are_each_audited(
    api: Api, db_url: str, seeded: dict[str, Any]
) -> None:
    """A patient acknowledging, a nurse acting as someone else, mass assignment and a
    2 MB body: each refused, each on the record, none changing the alert."""
    red = alert_id(db_url, seeded["deal"], "red")
    attempts: list[tuple[str, str, Any, int]] = [
        ("patient", "acknowledge", {"state": "acknowledged"}, 404),
        ("deal.mn1", "acknowledge", {"by": "deal.gp1"}, 400),
        ("deal.mn1", "acknowledge", {"state": "resolved", "team": "dover"}, 400),
        ("deal.mn1", "notes", {"text": "ok", "priority": "amber"}, 400),
        ("deal.mn1", "notes", b'{"text": "' + b"x" * (2 * 1024 * 1024) + b'"}', 413),
    ]
    for who, action, body, expected in attempts:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        status, answer = await post(api, f"alerts/{red}/{action}", who, raw=raw)
        assert status == expected, (who, body, answer)
        assert answer["status"] == expected
    rows = [r for r in audit_rows(db_url) if r[1].endswith("_alert")]
    assert [(r[0], r[2], r[4]) for r in rows] == [
        (f"patient:{DEAL_NHS}", seeded["deal"], 404),
        ("staff:deal.mn1", seeded["deal"], 400),
        ("staff:deal.mn1", seeded["deal"], 400),
        ("staff:deal.mn1", seeded["deal"], 400),
        ("staff:deal.mn1", seeded["deal"], 413),
    ]
    assert [r[5].get("fields") for r in rows[1:4]] == [["by"], ["state", "team"], ["priority"]]
    assert rows[4][5]["refused"] == "body too large"
    assert alert_unchanged(db_url, red) == ("open", None, 0)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"minutes": true, "reason": "patient at the GP"}', "minutes"),
        (b'{"minutes": "1e3", "reason": "patient at the GP"}', "minutes"),
        (b'{"minutes": "30", "reason": "patient at the GP"}', "minutes"),
        (b'{"minutes": 30, "reason": "at the GP", "reason": "fine"}', "'reason' more than once"),
        (b'{"minutes": NaN, "reason": "patient at the GP"}', "NaN"),
        (b'{"minutes": 30, "reason": 123}', "reason"),
    ],
)
async def test_a_body_is_strict_about_types_and_repeated_keys(
    api: Api, db_url: str, seeded: dict[str, Any], raw: bytes, problem: str
) -> None:
    amber = alert_id(db_url, seeded["deal"], "amber")
    status, answer = await post(api, f"alerts/{amber}/snooze", "deal.mn1", raw=raw)
    assert status == 400
    assert problem in str(answer)
    assert last_audit(db_url)[1:5] == ("snooze_alert", seeded["deal"], True, 400)
    assert alert_unchanged(db_url, amber) == ("open", None, 0)


async def test_a_snooze_in_whole_minutes_as_a_json_number_is_applied(
    api: Api, db_url: str, seeded: dict[str, Any]
) -> None:
    amber = alert_id(db_url, seeded["deal"], "amber")
    status, answer = await post(
        api, f"alerts/{amber}/snooze", "deal.mn1", {"minutes": 30, "reason": "at the GP"}
    )
    assert (status, answer["event"]) == (200, "snoozed")


async def test_the_queue_offers_only_the_states_it_serves(api: Api) -> None:
    async with api.session.get(f"{api.base}openapi.json") as r:
        spec = await r.json()
    (state,) = [
        p for p in spec["paths"]["/api/v1/queue"]["get"]["parameters"] if p["name"] == "state"
    ]
    ref = state["schema"]["anyOf"][0]["$ref"].rsplit("/", 1)[1]
    offered = spec["components"]["schemas"][ref]["enum"]
    assert offered == ["open", "acknowledged"]
    for value in offered:
        assert (await api.get("queue", "deal.mn1", state=value))[0] == 200
    status, body, _ = await api.get("queue", "deal.mn1", state="resolved")
    assert status == 400
    assert body["problems"][0]["parameter"] == "state"


SECURITY = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


async def test_every_answer_carries_no_store_and_the_security_headers(api: Api) -> None:
    answers = [
        await api.get(f"patients/{DEAL_NHS}/readings", "deal.mn1"),  # 200 with patient data
        await api.get(f"patients/{DEAL_NHS}/readings", None),  # 401
        await api.get(f"patients/{DEAL_NHS}/readings", "dover.mn1"),  # 404
        await api.get("queue", "patient"),  # 403
        await api.get("nothing-here", "deal.mn1"),  # the router's 404
    ]
    async with api.session.delete(f"{api.base}me") as r:  # the router's 405, unauthenticated
        answers.append((r.status, await r.json(content_type=None), r))
    async with api.session.get(f"{api.base}openapi.json") as r:
        answers.append((r.status, await r.json(), r))
    assert [a[0] for a in answers] == [200, 401, 404, 403, 404, 401, 200]
    for status, body, response in answers:
        for name, value in SECURITY.items():
            assert response.headers.get(name) == value, (status, name)
        assert response.headers["Server"] == "homeward"
        assert "Content-Security-Policy" in response.headers
        if status >= 400:
            assert response.content_type == PROBLEM
            assert body["status"] == status


async def test_the_routers_405_is_a_problem_naming_what_is_allowed(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.tokens['deal.mn1']}"}
    async with api.session.delete(f"{api.base}me", headers=headers) as r:
        assert (r.status, r.content_type) == (405, PROBLEM)
        assert "GET" in r.headers["Allow"]


SECRET = "hw_ThisIsTheBearerTokenThatMustNeverBeEchoed0000"


@pytest.mark.parametrize(
    "request_head",
    [
        # a control character in the token: aiohttp's parser refuses the header
        f"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\x01\r\n\r\n",
        # a header name that is not a token, right after the Authorization header
        f"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\n"
        f"Bad{SECRET}\x7f: 1\r\n\r\n",
        # a request line that is not HTTP, quoting the token
        f"GET /api/v1/me?t={SECRET}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        # a header larger than aiohttp takes
        f"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}{'A' * 9000}\r\n\r\n",
        # a body framing that contradicts itself
        "POST /api/v1/alerts/1/acknowledge HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {SECRET}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    ],
)
async def test_aiohttps_own_errors_are_problems_that_echo_nothing(
    api: Api, request_head: str
) -> None:
    where = urlsplit(api.base)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        writer.write(request_head.encode("latin-1"))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert 400 <= status < 500, answer
    assert SECRET.encode() not in answer
    assert b"ThisIsTheBearerToken" not in answer
    assert b"Content-Type: application/problem+json" in head
    assert b"Server: homeward\r\n" in head + b"\r\n"
    assert b"Cache-Control: no-store" in head
    problem = orjson.loads(body)
    assert problem["status"] == status


async def test_unauthenticated_audit_rows_are_limited_per_client_and_the_rest_counted(
    api: Api, db_url: str, clock: FrozenClock
) -> None:
    extra = 7
    for _ in range(ROWS_PER_WINDOW + extra):
        assert (await api.get("queue", None))[0] == 401
    rows = audit_rows(db_url)
    assert len(rows) == ROWS_PER_WINDOW
    assert {r[5]["client"] for r in rows} == {"127.0.0.1"}
    with psycopg.connect(db_url) as conn:
        dropped = conn.execute("SELECT client, dropped FROM audit_dropped").fetchall()
    assert dropped == [("127.0.0.1", extra)]
    clock.now += WINDOW_S  # a new window: the client's refusals are written again
    assert (await api.get("queue", None))[0] == 401
    assert len(audit_rows(db_url)) == ROWS_PER_WINDOW + 1
    # a valid token is never limited
    for _ in range(ROWS_PER_WINDOW + 1):
        assert (await api.get("queue", "deal.mn1"))[0] == 200
    assert len(audit_rows(db_url)) == 2 * ROWS_PER_WINDOW + 2


async def test_a_page_redirect_passes_through_with_the_headers(db_url: str) -> None:
    """A page beside the API (the web app's) may redirect with aiohttp's HTTPFound: it
    is not turned into a problem, and still carries the security headers."""
    from aiohttp import ClientSession, web
    from psycopg_pool import AsyncConnectionPool

    from api.app import ApiRunner, create_app

    async def login(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/login")

    pool = AsyncConnectionPool(db_url, min_size=1, max_size=1, open=False)
    await pool.open()
    app = create_app(pool, lambda: {})
    app.router.add_get("/app", login)
    runner = ApiRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with (
            ClientSession() as http,
            http.get(f"http://{host}:{port}/app", allow_redirects=False) as r,
        ):
            assert (r.status, r.headers["Location"]) == (302, "/login")
            assert r.headers["Cache-Control"] == "no-store"
            assert r.headers["Server"] == "homeward"
    finally:
        await runner.cleanup()
        await pool.close()
