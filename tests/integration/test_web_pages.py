"""The web app's pages through the running service: each person sees only what
api/access.py lets them (a forbidden page is the same 404 as a missing one), and every
page view of patient data is audited like an API read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from support import make_settings, purge_session, running_service
from web_support import NHS, OTHER_NHS, browser, seed, sign_in

UNKNOWN_NHS = "4010232137"


@pytest.fixture
async def base(db_url: str, broker_url: str) -> AsyncIterator[str]:
    seed(db_url)
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        pid = conn.execute(
            "SELECT patient_id FROM patients WHERE nhs_number = %s", (NHS,)
        ).fetchone()
        assert pid is not None
        for hours, value in ((30, 128.0), (20, 141.0), (2, 166.0)):
            conn.execute(
                "INSERT INTO readings (time, patient_id, device_id, metric, value, received_at,"
                " msg_id) VALUES (%s, %s, 'bp-web', 'systolic_bp', %s, %s, %s)",
                (now - timedelta(hours=hours), pid[0], value, now, f"m{hours}"),
            )
        conn.execute(
            "INSERT INTO late_reviews (patient_id, rule_id, measured_at, received_at, value,"
            " message) VALUES (%s, 'threshold:systolic_bp:stage2', %s, %s, 160, 'late 160')",
            (pid[0], now - timedelta(days=2), now),
        )
    settings = make_settings(db_url, broker_url)
    try:
        async with running_service(settings) as service:
            yield f"http://127.0.0.1:{service.http_port}"
    finally:
        purge_session(settings)


async def _status_and_text(base: str, who: str, path: str) -> tuple[int, str]:
    async with browser() as http:
        assert (await sign_in(http, base, who)).status == 303
        async with http.get(f"{base}{path}", allow_redirects=False) as r:
            return r.status, await r.text()


async def test_the_nurse_sees_their_patients_page_with_charts_and_bands(
    base: str, db_url: str
) -> None:
    status, html = await _status_and_text(base, "deal.mn1", f"/patients/{NHS}?days=7")
    assert status == 200
    assert "Web Patient" in html
    assert "<svg" in html
    assert "Systolic blood pressure" in html
    assert "amber ≥ 150" in html  # the hypertension template's band, drawn on the chart
    assert "late 160" in html  # a late reading to review
    assert "bp-web" in html  # the device
    assert "template:hypertension" in html  # each value's origin
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT actor, allowed, status, detail->>'via' FROM audit_log"
            " WHERE action = 'view_patient'"
        ).fetchall()
    assert rows == [("staff:deal.mn1", True, 200, "web")]


@pytest.mark.parametrize("days", ["30", "90", "nonsense"])
async def test_every_period_draws(base: str, days: str) -> None:
    status, html = await _status_and_text(base, "deal.mn1", f"/patients/{NHS}?days={days}")
    assert status == 200
    assert "<svg" in html


@pytest.mark.parametrize(
    ("who", "nhs"),
    [
        ("dover.mn1", NHS),  # another team's patient
        ("deal.sw1", NHS),  # a role without clinical access
        (NHS, NHS),  # a patient: the staff page is no page of theirs
        (NHS, OTHER_NHS),  # nor another patient's
        ("deal.mn1", UNKNOWN_NHS),  # nobody
    ],
)
async def test_a_forbidden_patient_page_is_the_same_404_as_a_missing_one(
    base: str, db_url: str, who: str, nhs: str
) -> None:
    status, html = await _status_and_text(base, who, f"/patients/{nhs}")
    assert status == 404
    assert "Page not found" in html
    assert "Patient" not in html.split("<main", 1)[1]  # no name leaks
    if who.startswith(("dover", "deal")):
        with psycopg.connect(db_url) as conn:
            refused = conn.execute(
                "SELECT allowed, status FROM audit_log WHERE action = 'view_patient'"
            ).fetchall()
        assert refused == [(False, 404)]


async def test_a_late_reading_is_closed_from_the_page(base: str, db_url: str) -> None:
    async with browser() as http:
        await sign_in(http, base, "deal.mn1")
        async with http.get(f"{base}/patients/{NHS}") as r:
            html = await r.text()
        csrf = html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        with psycopg.connect(db_url) as conn:
            (review_id,) = conn.execute("SELECT review_id FROM late_reviews").fetchone() or (0,)
        async with http.post(
            f"{base}/patients/{NHS}/late/{review_id}/close",
            data={"csrf_token": csrf},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with http.post(
            f"{base}/patients/{NHS}/late/{review_id}/close",
            data={"csrf_token": csrf},
            allow_redirects=False,
        ) as again:
            assert again.status == 404  # closed once; nothing to close now
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT reviewed_by FROM late_reviews").fetchall() == [("deal.mn1",)]


async def test_a_patient_sees_their_own_readings_and_targets_in_plain_words(
    base: str, db_url: str
) -> None:
    status, html = await _status_and_text(base, NHS, "/my-readings")
    assert status == 200
    assert "Hello Web Patient" in html
    assert "Your nurse would like your systolic blood pressure to stay under 150 mmHg." in html
    assert "Your nurse would like your systolic blood pressure to stay above 90 mmHg." in html
    assert "999 in an emergency" in html
    assert "<svg" in html
    assert "Other Patient" not in html
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT actor, allowed FROM audit_log WHERE action = 'view_own_record'"
        ).fetchall()
    assert rows == [(f"patient:{NHS}", True)]


async def test_staff_have_no_own_view(base: str) -> None:
    status, _ = await _status_and_text(base, "deal.mn1", "/my-readings")
    assert status == 404


async def test_the_alert_page_tells_its_whole_story_to_those_who_may_see_it(
    base: str, db_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        pid = conn.execute(
            "SELECT patient_id FROM patients WHERE nhs_number = %s", (NHS,)
        ).fetchone()
        assert pid is not None
        row = conn.execute(
            "INSERT INTO alerts (patient_id, rule_id, kind, priority, state, message, team_id,"
            " latest_value, worst_value, first_measured_at, latest_measured_at)"
            " VALUES (%s, 'threshold:systolic_bp:severe', 'threshold', 'red', 'open',"
            " 'Systolic 186 ≥ 180', 'deal', 186, 186, now(), now()) RETURNING alert_id",
            (pid[0],),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO alert_events (alert_id, kind, actor, data) VALUES (%s, 'raised', 'rules',"
            " '{\"value\": 186}')",
            (row[0],),
        )
    status, html = await _status_and_text(base, "deal.mn1", f"/alerts/{row[0]}")
    assert status == 200
    assert "Systolic 186 ≥ 180" in html
    assert "raised" in html
    for who, path in (("dover.mn1", f"/alerts/{row[0]}"), ("deal.mn1", "/alerts/999999")):
        status, html = await _status_and_text(base, who, path)
        assert status == 404
        assert "Page not found" in html
    with psycopg.connect(db_url) as conn:
        audited = conn.execute(
            "SELECT actor, allowed FROM audit_log WHERE action = 'view_alert' ORDER BY audit_id"
        ).fetchall()
    assert audited == [
        ("staff:deal.mn1", True),
        ("staff:dover.mn1", False),
        ("staff:deal.mn1", False),
    ]
