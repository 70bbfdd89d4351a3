"""Failures that must end visibly, through the running service: the database lost under
an HTTP action is a 503 (the client may retry; nothing was applied), and a timer that
fails or hangs makes /health degraded naming it, while ingest and the API carry on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from alerts import escalation_store
from alerts.teams import load_org_file
from api.tokens import issue_token
from devices.registry import add_device, add_patient
from support import (
    Publisher,
    async_wait_until,
    count_rows,
    make_settings,
    purge_session,
    reading_payload,
    running_service,
)

EXAMPLE = (Path(__file__).parents[2] / "deploy" / "teams.example.yaml").read_text()
NHS = "9434765919"


def seed_alert(db_url: str) -> tuple[int, str]:
    """The example organisation, a Deal patient with a device and a red alert, and a
    token for the team's monitoring nurse."""
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        escalation_store.load_organisation(conn, load_org_file(EXAMPLE), EXAMPLE)
        patient = add_patient(conn, nhs_number=NHS, name="Dee Deal", team="deal")
        add_device(conn, "bp-1", patient_nhs_number=NHS)
        row = conn.execute(
            "INSERT INTO alerts (patient_id, rule_id, kind, metric, priority, team_id,"
            " first_measured_at, latest_measured_at, message)"
            " VALUES (%s, 'threshold:systolic_bp:severe', 'threshold', 'systolic_bp', 'red',"
            " 'deal', %s, %s, 'red') RETURNING alert_id",
            (patient.patient_id, now, now),
        ).fetchone()
        assert row is not None
        conn.commit()
        _, token = issue_token(conn, now=now, staff_id="deal.mn1")
    return int(row[0]), token


def waiting_on_a_lock(db_url: str, locker_pid: int) -> int | None:
    """The backend of this database waiting for a lock (the API's request), if any."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> %s",
            (locker_pid,),
        ).fetchone()
    return int(row[0]) if row else None


async def test_the_database_lost_under_an_action_is_a_503_and_the_next_one_works(
    db_url: str, broker_url: str
) -> None:
    alert_id, token = seed_alert(db_url)
    settings = make_settings(db_url, broker_url, escalation_tick_s=0)
    headers = {"Authorization": f"Bearer {token}"}
    loop = asyncio.get_running_loop()
    try:
        async with running_service(settings) as service, aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{service.http_port}/api/v1/alerts/{alert_id}/acknowledge"
            with psycopg.connect(db_url) as locker:
                # Hold the alert's row lock, so that the action waits inside the lifecycle
                # store; then the database drops the action's connection under it.
                locker.execute("SELECT 1 FROM alerts WHERE alert_id = %s FOR UPDATE", (alert_id,))
                pid = locker.info.backend_pid

                async def acknowledge() -> tuple[int, dict[str, Any]]:
                    async with http.post(url, headers=headers) as r:
                        return r.status, await r.json(content_type=None)

                answer = asyncio.create_task(acknowledge())
                waiting: list[int] = []

                async def found() -> bool:
                    backend = await loop.run_in_executor(None, waiting_on_a_lock, db_url, pid)
                    waiting.extend([backend] if backend else [])
                    return bool(waiting)

                while not await found():
                    await asyncio.sleep(0.05)
                with psycopg.connect(db_url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (waiting[0],))
                status, body = await asyncio.wait_for(answer, 10)
                locker.rollback()
            assert status == 503, body
            assert "database is unavailable" in body["error"]
            # Nothing was applied; the same action succeeds once the database answers.
            assert count_rows(db_url, "SELECT count(*) FROM alerts WHERE state = 'open'") == 1
            async with http.post(url, headers=headers) as r:
                assert r.status == 200, await r.text()
    finally:
        purge_session(settings)
    assert count_rows(db_url, "SELECT count(*) FROM alerts WHERE state = 'acknowledged'") == 1


def alter(db_url: str, statement: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(statement)


async def health(http: aiohttp.ClientSession, port: int | None) -> tuple[int, dict[str, Any]]:
    async with http.get(f"http://127.0.0.1:{port}/health") as r:
        return r.status, await r.json()


async def wait_for_health(
    http: aiohttp.ClientSession, port: int | None, want: Callable[[int, dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        status, body = await health(http, port)
        if want(status, body):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


async def test_a_failing_timer_is_named_by_health_and_everything_else_carries_on(
    db_url: str, broker_url: str
) -> None:
    seed_alert(db_url)
    settings = make_settings(
        db_url, broker_url, escalation_tick_s=0.2, adherence_interval_s=0.3, timer_stall_s=1
    )
    publisher = Publisher(broker_url)
    try:
        async with running_service(settings) as service, aiohttp.ClientSession() as http:
            port = service.http_port
            body = await wait_for_health(
                http, port, lambda s, b: s == 200 and b["timers"]["escalation"]["runs"] > 0
            )
            # Off the event loop: the service runs in this one, and its escalation run may
            # hold the table the statement waits for.
            await asyncio.to_thread(
                alter, db_url, "ALTER TABLE escalation_steps RENAME TO escalation_steps_away"
            )
            body = await wait_for_health(http, port, lambda s, b: s == 503)
            assert len(body["problems"]) == 1, body["problems"]
            assert body["problems"][0].startswith("timer escalation: its last")
            assert "UndefinedTable" in body["problems"][0]
            assert body["timers"]["escalation"]["ok"] is False
            assert body["timers"]["adherence"]["ok"] is True
            assert body["database"]["connected"]
            assert body["mqtt"]["connected"]
            # Ingest and the rules carry on.
            publisher.publish(
                settings.readings_topic("bp-1"),
                reading_payload("while-failing", [("systolic_bp", 128, "mm[Hg]")]),
            )
            await async_wait_until(lambda: count_rows(db_url) == 1, what="reading stored")
            await asyncio.to_thread(
                alter, db_url, "ALTER TABLE escalation_steps_away RENAME TO escalation_steps"
            )
            body = await wait_for_health(http, port, lambda s, b: s == 200)
            assert body["problems"] == []
            assert body["timers"]["escalation"]["failures"] == 0
    finally:
        publisher.close()
        purge_session(settings)


async def test_a_hung_timer_is_named_by_health_until_it_runs_again(
    db_url: str, broker_url: str
) -> None:
    seed_alert(db_url)
    settings = make_settings(db_url, broker_url, escalation_tick_s=0.2, timer_stall_s=1)
    try:
        async with running_service(settings) as service, aiohttp.ClientSession() as http:
            port = service.http_port
            await wait_for_health(
                http, port, lambda s, b: s == 200 and b["timers"]["escalation"]["runs"] > 0
            )
            with psycopg.connect(db_url) as locker:
                # Every escalation run now waits for this lock: the timer hangs. (Taken off
                # the event loop, which the service shares: a run may hold the table now.)
                await asyncio.to_thread(
                    locker.execute, "LOCK TABLE escalation_steps IN ACCESS EXCLUSIVE MODE"
                )
                body = await wait_for_health(http, port, lambda s, b: s == 503)
                assert body["problems"][0].startswith(
                    "timer escalation: a run has been in progress for"
                ), body["problems"]
                runs = body["timers"]["escalation"]["runs"]
                async with http.get(f"http://127.0.0.1:{port}/api/v1/openapi.json") as r:
                    assert r.status == 200  # the API answers meanwhile
                locker.rollback()
            body = await wait_for_health(
                http, port, lambda s, b: s == 200 and b["timers"]["escalation"]["runs"] > runs
            )
            assert body["timers"]["escalation"]["problem"] is None
    finally:
        purge_session(settings)
