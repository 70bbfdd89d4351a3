"""The threshold editor through the running service: a GP backtests a change over the
patient's stored readings (the real rule engine), saves it with a reason, and the next
reading published over MQTT follows it; a stale edit and bad values are refused with a
clear message and nothing applied; only prescribing clinicians may change thresholds."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg
import pytest

from support import (
    Publisher,
    async_wait_until,
    count_rows,
    make_settings,
    purge_session,
    reading_payload,
    running_service,
)
from web.store import set_password
from web_support import NHS, PASSWORD, browser, hidden_fields, seed, sign_in

STAGE2 = "threshold:systolic_bp:stage2"
PAGE = f"/patients/{NHS}/thresholds"


@pytest.fixture
async def env(db_url: str, broker_url: str) -> AsyncIterator[tuple[str, Any]]:
    seed(db_url)
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        set_password(conn, now=now, password=PASSWORD, staff_id="deal.gp2")
        row = conn.execute(
            "SELECT patient_id FROM patients WHERE nhs_number = %s", (NHS,)
        ).fetchone()
        assert row is not None
        # Two episodes above 150 in the last 30 days (155, back to 130, then 157).
        for days, value in ((10, 155.0), (9, 130.0), (5, 157.0), (4, 128.0)):
            conn.execute(
                "INSERT INTO readings (time, patient_id, device_id, metric, value, received_at,"
                " msg_id) VALUES (%s, %s, 'bp-web', 'systolic_bp', %s, %s, %s)",
                (now - timedelta(days=days), row[0], value, now, f"old{days}"),
            )
    settings = make_settings(db_url, broker_url)
    try:
        async with running_service(settings) as service:
            yield f"http://127.0.0.1:{service.http_port}", settings
    finally:
        purge_session(settings)


async def _form(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    async with http.get(f"{base}{PAGE}", allow_redirects=False) as r:
        assert r.status == 200
        html = await r.text()
    fields = hidden_fields(html)
    values = dict(
        re.findall(
            r'name="([^"]+\.(?:limit|hysteresis))" type="text" inputmode="decimal" value="([^"]*)"',
            html,
        )
    )
    return {**fields, **values}


async def _post(http: aiohttp.ClientSession, base: str, form: dict[str, str]) -> tuple[int, str]:
    async with http.post(f"{base}{PAGE}", data=form, allow_redirects=False) as r:
        return r.status, await r.text()


def _version(db_url: str) -> int:
    return count_rows(db_url, "SELECT COALESCE(max(version), 0) FROM patient_rules")


async def test_backtest_then_save_and_the_next_reading_follows(
    env: tuple[str, Any], db_url: str, broker_url: str
) -> None:
    base, settings = env
    async with browser() as http:
        await sign_in(http, base, "deal.gp1")
        form = await _form(http, base)
        assert form[f"{STAGE2}.limit"] == "150.0"
        status, html = await _post(
            http, base, {**form, f"{STAGE2}.limit": "160", "action": "backtest"}
        )
        assert status == 200
        summary = re.search(r'id="backtest-summary">(.*?)</p>', html, re.S)
        assert summary is not None
        text = re.sub(r"<[^>]+>", "", summary.group(1))
        assert "would have raised 0 alerts instead of 2" in text
        assert _version(db_url) == 0  # a backtest saves nothing
        status, html = await _post(
            http,
            base,
            {**form, f"{STAGE2}.limit": "160", "reason": "GP review: target 160", "action": "save"},
        )
        assert status == 303
    with psycopg.connect(db_url) as conn:
        saved = conn.execute(
            "SELECT overrides, version, updated_by, reason FROM patient_rules"
        ).fetchall()
    assert saved == [({STAGE2: {"limit": 160.0}}, 1, "deal.gp1", "GP review: target 160")]
    pub = Publisher(broker_url)
    try:
        pub.publish(
            settings.readings_topic("bp-web"),
            reading_payload("new-155", [("systolic_bp", 155, "mm[Hg]")]),
        )
        await async_wait_until(
            lambda: (
                count_rows(db_url, "SELECT count(*) FROM readings WHERE msg_id = 'new-155'") == 1
            ),
            what="the 155 stored",
        )
        assert count_rows(db_url, "SELECT count(*) FROM alerts WHERE rule_id = %s", STAGE2) == 0
        pub.publish(
            settings.readings_topic("bp-web"),
            reading_payload("new-165", [("systolic_bp", 165, "mm[Hg]")]),
        )
        await async_wait_until(
            lambda: (
                count_rows(db_url, "SELECT count(*) FROM alerts WHERE rule_id = %s", STAGE2) == 1
            ),
            what="an alert at the new limit",
        )
    finally:
        pub.close()


async def test_a_stale_edit_is_refused_and_nothing_of_it_applied(
    env: tuple[str, Any], db_url: str
) -> None:
    base, _ = env
    async with browser() as first, browser() as second:
        await sign_in(first, base, "deal.gp1")
        await sign_in(second, base, "deal.gp2")
        form1, form2 = await _form(first, base), await _form(second, base)
        status, _ = await _post(
            first, base, {**form1, f"{STAGE2}.limit": "160", "reason": "first", "action": "save"}
        )
        assert status == 303
        status, html = await _post(
            second, base, {**form2, f"{STAGE2}.limit": "140", "reason": "second", "action": "save"}
        )
        assert status == 409
        assert "Someone else changed this patient" in html
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT overrides, version FROM patient_rules").fetchall() == [
            ({STAGE2: {"limit": 160.0}}, 1)
        ]
        assert conn.execute("SELECT count(*) FROM patient_rules_history").fetchone() == (1,)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"threshold:systolic_bp:low.limit": "160"}, "threshold:systolic_bp:low"),  # low above high
        ({f"{STAGE2}.limit": "5000"}, "reaches outside what systolic_bp can be"),
        ({f"{STAGE2}.limit": "a lot"}, "limit must be a number"),
        (
            {f"{STAGE2}.limit": "160", f"{STAGE2}.unit": "kPa"},
            "limits are set in mm[Hg], not &#39;kPa&#39;",
        ),
        ({f"{STAGE2}.limit": "160", "reason": ""}, "Give the reason for the change"),
    ],
)
async def test_bad_values_are_refused_with_a_clear_message(
    env: tuple[str, Any], db_url: str, changes: dict[str, str], message: str
) -> None:
    base, _ = env
    async with browser() as http:
        await sign_in(http, base, "deal.gp1")
        form = await _form(http, base)
        status, html = await _post(
            http, base, {**form, "reason": "why", **changes, "action": "save"}
        )
    assert status == 400
    assert message in html
    assert _version(db_url) == 0


@pytest.mark.parametrize("who", ["deal.mn1", "dover.mn1", "deal.sw1", NHS])
async def test_only_a_prescribing_clinician_of_the_patient_opens_the_editor(
    env: tuple[str, Any], who: str
) -> None:
    base, _ = env
    async with browser() as http:
        await sign_in(http, base, who)
        async with http.get(f"{base}{PAGE}", allow_redirects=False) as r:
            assert r.status == 404
