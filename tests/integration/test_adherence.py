"""Missed readings and silent devices against a real database, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.adherence import check
from devices.registry import add_device, add_patient

NHS = "9434765919"


@pytest.fixture
def seeded(db_url: str) -> str:
    with psycopg.connect(db_url) as conn:
        patient = add_patient(
            conn, nhs_number=NHS, name="Adherence", team="dover", conditions=["heart_failure"]
        )
        add_device(conn, "sc-1", patient_nhs_number=NHS)
        conn.execute(
            "INSERT INTO readings (time, patient_id, device_id, metric, value, received_at,"
            " msg_id) VALUES (%s, %s, 'sc-1', 'body_weight', 80, %s, 'w1')",
            (
                datetime(2026, 11, 21, 8, tzinfo=UTC),
                patient.patient_id,
                datetime(2026, 11, 21, 8, tzinfo=UTC),
            ),
        )
        conn.execute(
            "UPDATE devices SET last_msg_at = %s, status = 'online'",
            (datetime(2026, 11, 21, 8, tzinfo=UTC),),
        )
        conn.commit()
    return db_url


def open_alerts(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        return dict(
            conn.execute("SELECT rule_id, hit_count FROM alerts WHERE state = 'open'").fetchall()
        )


async def test_missed_weight_is_raised_once_after_the_grace_period(seeded: str) -> None:
    before = datetime(2026, 11, 22, 10, 59, tzinfo=UTC)  # London = UTC in November
    after = datetime(2026, 11, 22, 11, 1, tzinfo=UTC)
    async with await psycopg.AsyncConnection.connect(seeded) as conn:
        assert await check(conn, before) == 0
        assert await check(conn, after) == 1
        assert await check(conn, after + timedelta(minutes=1)) == 0  # a restart: same answer
    assert open_alerts(seeded) == {"missed:body_weight": 1}
    # The next day's deadline moves the same alert on rather than opening another.
    async with await psycopg.AsyncConnection.connect(seeded) as conn:
        assert await check(conn, after + timedelta(days=1)) == 2  # + the silent scales
    assert open_alerts(seeded) == {"missed:body_weight": 2, "device_silent:sc-1": 1}


async def test_a_device_that_says_it_is_offline_raises_a_technical_alert(seeded: str) -> None:
    with psycopg.connect(seeded) as conn:
        conn.execute("UPDATE devices SET status = 'offline'")
        conn.commit()
    async with await psycopg.AsyncConnection.connect(seeded) as conn:
        await check(conn, datetime(2026, 11, 21, 9, tzinfo=UTC))
    with psycopg.connect(seeded) as conn:
        row = conn.execute("SELECT priority, team_id, message FROM alerts").fetchone()
    assert row is not None
    assert row[:2] == ("technical", "dover")
    assert "offline" in row[2]


async def test_the_service_runs_the_check_on_its_timer(seeded: str, broker_url: str) -> None:
    from support import async_wait_until, make_settings, purge_session, running_service

    settings = make_settings(seeded, broker_url, adherence_interval_s=0.5)
    try:
        async with running_service(settings):
            await async_wait_until(
                lambda: "missed:body_weight" in open_alerts(seeded), what="the scheduled check"
            )
    finally:
        purge_session(settings)


async def test_a_pass_over_many_patients_records_each_miss_once_with_its_event(
    db_url: str,
) -> None:
    """Candidates of a pass are written in one statement; later passes record exactly what
    changed, and a miss a person resolved is not raised again for the same deadline."""
    from tools.bench.workload import synthetic_nhs_numbers

    with psycopg.connect(db_url) as conn:
        for n, nhs in enumerate(synthetic_nhs_numbers(30)):
            add_patient(
                conn, nhs_number=nhs, name=f"P{n}", team="deal", conditions=["heart_failure"]
            )
        conn.commit()
    at = datetime(2026, 11, 22, 11, 1, tzinfo=UTC)  # after the 10:00 weight deadline + grace
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        assert await check(conn, at) == 30
        assert await check(conn, at + timedelta(minutes=5)) == 0
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = now()"
            " WHERE alert_id = (SELECT min(alert_id) FROM alerts)"
        )
        conn.commit()
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        # a person resolved that day's miss: it is not raised again for the same deadline
        assert await check(conn, at + timedelta(minutes=10)) == 0
        # the next day's miss is new: a new alert for the one resolved, the others move on
        assert await check(conn, at + timedelta(days=1)) == 30
    with psycopg.connect(db_url) as conn:
        events = conn.execute(
            "SELECT kind, count(*) FROM alert_events GROUP BY kind ORDER BY kind"
        ).fetchall()
        open_count = conn.execute("SELECT count(*) FROM alerts WHERE state = 'open'").fetchone()
    assert events == [("raised", 31), ("updated", 29)]
    assert open_count == (30,)
