"""Readings posted over HTTP take the MQTT path exactly, through the running service:
the same validation, quarantine reasons, storage and rules, answered after the COMMIT;
a device authenticates with its own credential and posts only for itself (audited)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import psycopg
import pytest

from bad_payloads import BAD, OTHER
from devices.registry import add_device, add_patient
from homeward.config import Settings
from service.wiring import HomewardService
from support import (
    Publisher,
    async_wait_until,
    count_rows,
    make_settings,
    purge_session,
    reading_payload,
    running_service,
)

NHS = "9434765919"
PASSWORDS = {"ox-1": "ox-secret", "bp-1": "bp-secret"}
BP = [("systolic_bp", 186, "mm[Hg]"), ("diastolic_bp", 96, "mm[Hg]")]


@pytest.fixture
async def service(db_url: str, broker_url: str) -> AsyncIterator[tuple[Settings, HomewardService]]:
    settings = make_settings(db_url, broker_url)
    with psycopg.connect(db_url) as conn:
        add_patient(
            conn, nhs_number=NHS, name="Http Patient", conditions=["hypertension"], team="deal"
        )
        add_patient(conn, nhs_number=OTHER, name="Someone Else", team="deal")
        for device, password in PASSWORDS.items():
            add_device(conn, device, patient_nhs_number=NHS, password=password)
        add_device(conn, "no-password-1", patient_nhs_number=NHS)
        conn.commit()
    try:
        async with running_service(settings) as running:
            yield settings, running
    finally:
        purge_session(settings)


async def post(
    running: HomewardService, device: str, body: bytes, login: tuple[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{running.http_port}/api/v1/devices/{device}/readings"
    user, password = login or (device, PASSWORDS.get(device, ""))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url, data=body, headers={"Authorization": aiohttp.encode_basic_auth(user, password)}
        ) as r,
    ):
        return r.status, await r.json()


def audit(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT actor, action, allowed, status FROM audit_log WHERE action = 'post_readings'"
            " ORDER BY audit_id"
        ).fetchall()


async def test_a_posted_reading_is_stored_once_and_raises_its_alert(
    service: tuple[Settings, HomewardService], db_url: str
) -> None:
    _, running = service
    body = reading_payload("bp-7", BP)
    assert await post(running, "bp-1", body) == (
        200,
        {"device": "bp-1", "verdict": "stored", "readings": 2},
    )
    # answered after the COMMIT: the rows and the alert are there when the answer is
    assert count_rows(db_url) == 2
    assert count_rows(db_url, "SELECT count(*) FROM alerts WHERE rule_id LIKE '%:severe'") == 1
    assert await post(running, "bp-1", body) == (
        200,
        {"device": "bp-1", "verdict": "duplicate", "readings": 2},
    )
    assert count_rows(db_url) == 2
    assert count_rows(db_url, "SELECT count(*) FROM alerts WHERE rule_id LIKE '%:severe'") == 1


async def test_the_same_reading_over_mqtt_and_http_is_one_reading(
    service: tuple[Settings, HomewardService], db_url: str, broker_url: str
) -> None:
    settings, running = service
    at = datetime.now(UTC).replace(microsecond=0)
    over_mqtt = reading_payload("bp-8", BP, measured_at=at)
    pub = Publisher(broker_url)
    try:
        pub.publish(settings.readings_topic("bp-1"), over_mqtt)
        await async_wait_until(lambda: count_rows(db_url) == 2, what="the MQTT reading")
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        before = conn.execute("SELECT * FROM readings ORDER BY metric").fetchall()
    status, body = await post(running, "bp-1", over_mqtt)
    assert (status, body["verdict"]) == (200, "duplicate")
    # posted with another msg_id it is stored like the MQTT one, column for column
    status, body = await post(running, "bp-1", reading_payload("bp-9", BP, measured_at=at))
    assert (status, body["verdict"]) == (200, "stored")
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT * FROM readings ORDER BY msg_id, metric").fetchall()
        described = conn.execute("SELECT * FROM readings LIMIT 0").description
        columns = [c.name for c in described or ()]
    assert rows[:2] == before
    differ = {"msg_id", "received_at"}
    for mqtt_row, http_row in zip(rows[:2], rows[2:], strict=True):
        same = {c: v for c, v in zip(columns, mqtt_row, strict=True) if c not in differ}
        assert same == {c: v for c, v in zip(columns, http_row, strict=True) if c not in differ}
    assert count_rows(db_url, "SELECT count(*) FROM alerts WHERE rule_id LIKE '%:severe'") == 1


async def test_every_bad_payload_is_quarantined_with_the_reason_mqtt_gives(
    service: tuple[Settings, HomewardService], db_url: str
) -> None:
    _, running = service
    cases = [b for b in BAD if b[1] == "ox-1" and not b[3]]  # HTTP has no retained messages
    assert len(cases) >= 20
    for label, device, payload, _retained, reason in cases:
        status, body = await post(running, device, payload)
        assert (status, body.get("reason")) == (422, reason), (label, body)
        assert body["detail"].startswith(f"quarantined: {reason}"), label
    assert count_rows(db_url, "SELECT count(*) FROM quarantine") == len(cases)
    assert count_rows(db_url) == 0
    status, body = await post(running, "ox-1", reading_payload("good", [("spo2", 95, "%")]))
    assert (status, body["verdict"]) == (200, "stored")


async def test_a_device_posts_only_for_itself_with_its_own_credential(
    service: tuple[Settings, HomewardService], db_url: str
) -> None:
    _, running = service
    body = reading_payload("x-1", [("spo2", 95, "%")])
    assert (await post(running, "ox-1", body, ("bp-1", PASSWORDS["bp-1"])))[0] == 403
    assert (await post(running, "ox-1", body, ("ox-1", "wrong")))[0] == 401
    assert (await post(running, "no-password-1", body, ("no-password-1", "")))[0] == 401
    assert (await post(running, "ghost-1", body, ("ghost-1", "x")))[0] == 401
    url = f"http://127.0.0.1:{running.http_port}/api/v1/devices/ox-1/readings"
    async with aiohttp.ClientSession() as http, http.post(url, data=body) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Basic")
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers={"Authorization": "Bearer hw_" + "A" * 43}) as r,
    ):
        assert r.status == 401  # a staff or patient token is no device credential
    assert count_rows(db_url) == 0
    assert audit(db_url) == [
        ("device:bp-1", "post_readings", False, 403),
        ("device:ox-1", "post_readings", False, 401),
        ("device:no-password-1", "post_readings", False, 401),
        ("device:ghost-1", "post_readings", False, 401),
    ]


async def test_posts_beyond_the_device_limit_are_refused(db_url: str, broker_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Http Patient", team="deal")
        add_device(conn, "ox-1", patient_nhs_number=NHS, password=PASSWORDS["ox-1"])
        add_device(conn, "bp-1", patient_nhs_number=NHS, password=PASSWORDS["bp-1"])
        conn.commit()
    settings = make_settings(db_url, broker_url, device_posts_per_minute=3)
    try:
        async with running_service(settings) as running:
            statuses = [
                (await post(running, "ox-1", reading_payload(f"r-{i}", [("spo2", 95, "%")])))[0]
                for i in range(4)
            ]
            other = await post(running, "bp-1", reading_payload("b-1", [("spo2", 95, "%")]))
    finally:
        purge_session(settings)
    assert statuses == [200, 200, 200, 429]  # the setting is the limit, per device
    assert other[0] == 200
    assert count_rows(db_url) == 4
