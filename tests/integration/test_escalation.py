"""Escalation against a real database with an injected clock; restart survival; webhook and
e-mail delivery to real local servers; concurrent hits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from alerts import escalation_store, notify
from alerts.commands import Acknowledge
from alerts.lifecycle_store import apply_command
from alerts.teams import load_org_file
from devices.registry import add_patient
from support import count_rows, wait_until
from tools.embedded.mosquitto import free_port

EXAMPLE = (Path(__file__).parents[2] / "deploy" / "teams.example.yaml").read_text()
NHS = "9434765919"
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # in hours (London = UTC in November)
MONDAY_22 = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)


def seed(db_url: str, org_text: str = EXAMPLE) -> int:
    with psycopg.connect(db_url) as conn:
        patient = add_patient(
            conn, nhs_number=NHS, name="Escalation", team="deal", conditions=["hypertension"]
        )
        escalation_store.load_organisation(conn, load_org_file(org_text), org_text)
        conn.commit()
    return patient.patient_id


def raise_alert(
    db_url: str,
    patient_id: int,
    at: datetime,
    priority: str = "red",
    rule: str = "threshold:systolic_bp:severe",
) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "INSERT INTO alerts (patient_id, rule_id, kind, priority, team_id, opened_at,"
            " first_measured_at, latest_measured_at, message)"
            " VALUES (%s, %s, 'threshold', %s, 'deal', %s, %s, %s, 'systolic 186')"
            " RETURNING alert_id",
            (patient_id, rule, priority, at, at, at),
        ).fetchone()
        conn.commit()
    assert row is not None
    return int(row[0])


async def tick(db_url: str, at: datetime) -> escalation_store.TickResult:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        return await escalation_store.tick(conn, at)


def fired(db_url: str, alert_id: int) -> list[tuple[int, list[str]]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT data->'level', data->'notified' FROM alert_events"
            " WHERE alert_id = %s AND kind = 'escalated' ORDER BY event_id",
            (alert_id,),
        ).fetchall()
    return [(int(level), list(people)) for level, people in rows]


async def test_each_level_fires_at_its_due_time_and_stops_on_acknowledgement(
    db_url: str,
) -> None:
    alert = raise_alert(db_url, seed(db_url), MONDAY_10)
    assert (await tick(db_url, MONDAY_10)).fired == 1  # level 1 at once: the nurse on duty
    assert fired(db_url, alert) == [(1, ["deal.mn1"])]
    assert (await tick(db_url, MONDAY_10 + timedelta(seconds=119))).fired == 0
    assert (await tick(db_url, MONDAY_10 + timedelta(seconds=120))).fired == 1
    assert fired(db_url, alert)[-1] == (2, ["deal.matron1"])
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await apply_command(
            conn,
            alert,
            Acknowledge("deal.mn1", MONDAY_10 + timedelta(seconds=200)),
            MONDAY_10 + timedelta(seconds=200),
        )
    assert (await tick(db_url, MONDAY_10 + timedelta(seconds=900))).fired == 0
    # The policy's acknowledgement timeout (30 min) passes: the alert is open again, the
    # current level (the matron, level 2) is told again at once, and escalation resumes
    # where it paused — level 3 was 220 s away when acknowledged.
    resumed = MONDAY_10 + timedelta(seconds=200 + 1800)
    result = await tick(db_url, resumed)
    assert (result.expired, result.renotified, result.fired) == (1, 1, 0)
    assert renotified(db_url, alert) == [
        ("in_app", "deal"),
        ("email", "deal.matron1@example.invalid"),
        ("email", "deal-spa@example.invalid"),  # the team's single point of access
    ]
    assert (await tick(db_url, resumed + timedelta(seconds=219))).fired == 0
    # level 3 and, the policy repeating once, level 1 again (its delay is 0)
    assert (await tick(db_url, resumed + timedelta(seconds=220))).fired == 2
    assert [level for level, _ in fired(db_url, alert)[-2:]] == [3, 1]
    assert kinds(db_url, alert) == [
        "escalation_planned",
        "escalated",
        "escalated",
        "acknowledged",
        "acknowledgement_expired",
        "notification_requested",
        "escalated",
        "escalated",
    ]


def kinds(db_url: str, alert: int) -> list[str]:
    with psycopg.connect(db_url) as conn:
        return [
            k
            for (k,) in conn.execute(
                "SELECT kind FROM alert_events WHERE alert_id = %s ORDER BY event_id", (alert,)
            )
        ]


def renotified(db_url: str, alert: int) -> list[tuple[str, str]]:
    """The notifications sent to the current level outside a step (keys ``request-…``)."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT channel, target FROM notifications WHERE alert_id = %s"
            " AND idempotency_key LIKE %s ORDER BY notification_id",
            (alert, f"alert-{alert}-request-%"),
        ).fetchall()
    return [(str(c), str(t)) for c, t in rows]


async def test_out_of_hours_alerts_go_to_rapid_response(db_url: str) -> None:
    alert = raise_alert(db_url, seed(db_url), MONDAY_22)
    await tick(db_url, MONDAY_22)
    assert fired(db_url, alert) == [(1, ["skc-rapid-response.rr1"])]


async def test_snoozed_alerts_wait(db_url: str) -> None:
    alert = raise_alert(db_url, seed(db_url), MONDAY_10, priority="amber")
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE alerts SET snoozed_until = %s WHERE alert_id = %s",
            (MONDAY_10 + timedelta(minutes=30), alert),
        )
        conn.commit()
    assert (await tick(db_url, MONDAY_10)).fired == 0
    assert (await tick(db_url, MONDAY_10 + timedelta(minutes=30))).fired == 1


def test_a_step_due_while_the_process_is_dead_fires_exactly_once_after_restart(
    db_url: str, tmp_path: Path
) -> None:
    patient = seed(db_url)
    now = datetime.now(UTC)
    alert = raise_alert(db_url, patient, now)
    with psycopg.connect(db_url) as conn:  # level 2 not due until the process is dead
        conn.execute("UPDATE alerts SET policy = '{}'::jsonb WHERE alert_id = %s", (alert,))
        conn.execute(
            "INSERT INTO escalation_steps VALUES (%s, 1, 1, %s, %s, NULL),"
            " (%s, 2, 2, %s, %s, NULL)",
            (
                alert,
                now,
                '["role:community_matron"]',
                alert,
                now + timedelta(hours=1),
                '["role:gp"]',
            ),
        )
        conn.commit()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEWARD_")}
    env.update(
        HOMEWARD_DATABASE_URL=db_url,
        HOMEWARD_MQTT_URL="mqtt://127.0.0.1:1",
        HOMEWARD_HTTP_PORT="0",
        HOMEWARD_ESCALATION_TICK_S="0.2",
        HOMEWARD_ADHERENCE_INTERVAL_S="0",
    )
    log = tmp_path / "service.log"

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "commands.main", "run"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    proc = start()
    try:
        wait_until(lambda: len(fired(db_url, alert)) == 1, what="level 1")
        proc.send_signal(signal.SIGKILL)  # killed before level 2 is due
        proc.wait(10)
        assert len(fired(db_url, alert)) == 1
        with psycopg.connect(db_url) as conn:  # level 2 fell due while it was dead
            conn.execute(
                "UPDATE escalation_steps SET due_at = now() - interval '1 second'"
                " WHERE alert_id = %s AND step_no = 2",
                (alert,),
            )
        proc = start()
        wait_until(lambda: len(fired(db_url, alert)) == 2, what="level 2 after restart")
        more = datetime.now(UTC) + timedelta(seconds=2)
        wait_until(lambda: datetime.now(UTC) > more, what="more ticks")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert [level for level, _ in fired(db_url, alert)] == [1, 2], log.read_text()[-2000:]


@pytest.fixture
async def flaky_receiver() -> AsyncIterator[dict[str, Any]]:
    """A real HTTP receiver that is down (503) until told otherwise; it records requests."""
    state: dict[str, Any] = {"up": False, "received": []}

    async def hook(request: web.Request) -> web.Response:
        if not state["up"]:
            return web.Response(status=503)
        state["received"].append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state["url"] = f"http://127.0.0.1:{port}/hook"
    yield state
    await runner.cleanup()


async def test_webhook_down_then_up_is_delivered_once_with_one_key(
    db_url: str, flaky_receiver: dict[str, Any]
) -> None:
    org = EXAMPLE.replace(
        "webhook_url: null\n      webhook_secret_env: null",
        f"webhook_url: {flaky_receiver['url']}\n      webhook_secret_env: DEAL_WEBHOOK_SECRET",
        1,
    )
    assert flaky_receiver["url"] in org
    alert = raise_alert(db_url, seed(db_url, org), MONDAY_10)
    senders = notify.Senders(None, "homeward@test", {"DEAL_WEBHOOK_SECRET": "s3cret"})
    await tick(db_url, MONDAY_10)
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        at = MONDAY_10
        for _ in range(3):  # receiver down: retried with backoff, every attempt recorded
            await notify.deliver_due(conn, senders, at)
            at += timedelta(minutes=10)
        flaky_receiver["up"] = True
        await notify.deliver_due(conn, senders, at)
        await notify.deliver_due(conn, senders, at + timedelta(hours=1))
    assert len(flaky_receiver["received"]) == 1
    headers, body = flaky_receiver["received"][0]
    assert headers["Idempotency-Key"] == f"alert-{alert}-step-1-webhook-{flaky_receiver['url']}"
    assert headers["X-Homeward-Signature"] == notify.sign("s3cret", body)
    attempts = count_rows(
        db_url,
        "SELECT count(*) FROM notification_attempts a JOIN"
        " notifications n USING (notification_id) WHERE n.channel = 'webhook'",
    )
    assert attempts == 4


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[str, _Inbox]]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield f"smtp://127.0.0.1:{port}", inbox
    controller.stop()


async def test_email_reaches_a_real_smtp_server(
    db_url: str, smtp_server: tuple[str, _Inbox]
) -> None:
    url, inbox = smtp_server
    alert = raise_alert(db_url, seed(db_url), MONDAY_10)
    await tick(db_url, MONDAY_10)
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        delivered, failed = await notify.deliver_due(
            conn, notify.Senders(url, "hw@test"), MONDAY_10
        )
    assert failed == 0
    assert delivered >= 2  # the nurse on duty and the team's single point of access
    assert any(f"alert {alert}".encode() in m for m in inbox.messages)
    assert all(NHS.encode() not in m for m in inbox.messages)  # no identifiers by e-mail


async def test_the_same_hit_from_two_workers_makes_one_alert(db_url: str) -> None:
    patient = seed(db_url)
    from alerts.engine import Decisions
    from alerts.rules.types import Priority, RuleHit
    from alerts.store import write_decisions

    hit = RuleHit(
        "threshold:systolic_bp:severe",
        "threshold",
        "systolic_bp",
        Priority.RED,
        186.0,
        MONDAY_10,
        "systolic 186 ≥ 180",
        "high",
    )

    async def worker() -> None:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            async with conn.transaction():
                await write_decisions(conn.cursor(), Decisions(hits=[(patient, hit)]), MONDAY_10)
                await asyncio.sleep(0.2)  # both transactions overlap

    await asyncio.gather(worker(), worker())
    assert count_rows(db_url, "SELECT count(*) FROM alerts") == 1
    assert count_rows(db_url, "SELECT hit_count FROM alerts") == 2


def _queue_local_notifications(db_url: str, alert: int, count: int, at: datetime) -> None:
    """``count`` due notifications on the channels without an outside service."""
    with psycopg.connect(db_url) as conn:
        conn.cursor().executemany(
            "INSERT INTO notifications (alert_id, channel, target, payload, idempotency_key,"
            ' next_attempt_at) VALUES (%s, %s, %s, \'{"message": "m"}\', %s, %s)',
            [
                (alert, "in_app" if i % 2 else "feedback", f"device-{i}", f"storm-{alert}-{i}", at)
                for i in range(count)
            ],
        )


async def test_an_alert_storm_is_delivered_in_one_tick_past_the_claim_limit(db_url: str) -> None:
    alert = raise_alert(db_url, seed(db_url), MONDAY_10)
    storm = 3 * notify.CLAIM_LIMIT + 7
    _queue_local_notifications(db_url, alert, storm, MONDAY_10)
    published: list[tuple[str, bytes]] = []
    senders = notify.Senders(
        None, "hw@test", publish_feedback=lambda d, p: published.append((d, p))
    )
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        delivered, failed = await notify.deliver_due(conn, senders, MONDAY_10)
    assert (delivered, failed) == (storm, 0)
    assert len(published) == (storm + 1) // 2  # the feedback ones, each published once
    undelivered = count_rows(
        db_url,
        f"SELECT count(*) FROM notifications WHERE idempotency_key LIKE 'storm-{alert}-%'"
        " AND delivered_at IS NULL",
    )
    assert undelivered == 0
    assert count_rows(db_url, "SELECT count(*) FROM notification_attempts") >= storm


async def test_a_backlog_is_worked_off_over_several_ticks(db_url: str) -> None:
    alert = raise_alert(db_url, seed(db_url), MONDAY_10)
    per_tick = notify.MAX_PASSES * notify.CLAIM_LIMIT
    _queue_local_notifications(db_url, alert, per_tick + 5, MONDAY_10)
    senders = notify.Senders(None, "hw@test", publish_feedback=lambda _d, _p: None)
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        assert await notify.deliver_due(conn, senders, MONDAY_10) == (per_tick, 0)
        assert await notify.deliver_due(conn, senders, MONDAY_10) == (5, 0)


async def test_feedback_while_the_broker_is_away_is_recorded_and_retried(db_url: str) -> None:
    alert = raise_alert(db_url, seed(db_url), MONDAY_10)
    _queue_local_notifications(db_url, alert, 1, MONDAY_10)  # one feedback message
    published: list[tuple[str, bytes]] = []
    away = notify.Senders(None, "hw@test", publish_feedback=None)
    back = notify.Senders(None, "hw@test", publish_feedback=lambda d, p: published.append((d, p)))
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        assert await notify.deliver_due(conn, away, MONDAY_10) == (0, 1)
        assert await notify.deliver_due(conn, back, MONDAY_10) == (0, 0)  # not due yet
        assert await notify.deliver_due(conn, back, MONDAY_10 + timedelta(minutes=5)) == (1, 0)
    assert published == [("device-0", b'{"message":"m"}')]
    errors = count_rows(
        db_url,
        "SELECT count(*) FROM notification_attempts a JOIN notifications n USING"
        f" (notification_id) WHERE n.idempotency_key = 'storm-{alert}-0' AND NOT a.ok",
    )
    assert errors == 1
