"""Rollups equal the raw readings for any arrival order (issue 14, item 11; migration 0011,
homeward/db/rollups.py): late uploads older than the refresh policies' windows, backfill
into compressed chunks and the bucket in progress, compared at every step — before any
refresh, after the policies' jobs as deployed, and after the service's refresher."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devices.registry import add_device, add_patient
from homeward.config import Settings
from homeward.db.migrate import upgrade
from homeward.db.policies import apply_policies
from homeward.db.rollups import refresh_dirty
from support import (
    Publisher,
    async_wait_until,
    ensure_team,
    make_settings,
    purge_session,
    reading_payload,
    running_service,
)
from tools.embedded.mosquitto import free_port
from tools.embedded.postgres import EmbeddedPostgres, timescaledb_installed

NHS = "9434765919"
WIDTHS = {"readings_hourly": "hour", "readings_daily": "day"}


@pytest.fixture
def timescale_db(tmp_path: Path) -> Iterator[str]:
    if not timescaledb_installed():
        pytest.skip("TimescaleDB extension is not installed for this PostgreSQL")
    server = EmbeddedPostgres(tmp_path / "tsdb", free_port())
    server.start()
    try:
        upgrade(server.url)
        defaults = Settings(_env_file=None)  # the policies as deployed
        apply_policies(
            server.url,
            compress_after_days=defaults.compress_after_days,
            retention_days=defaults.retention_days,
        )
        with psycopg.connect(server.url, autocommit=True) as conn:
            # The policies' jobs run when the test says (CALL run_job), not when the
            # server's scheduler happens to start them: each step is then deterministic.
            conn.execute(
                "SELECT alter_job(job_id, scheduled => false)"
                " FROM timescaledb_information.jobs WHERE job_id >= 1000"
            )
        with psycopg.connect(server.url) as conn:
            ensure_team(conn)
            add_patient(conn, nhs_number=NHS, name="Late", team="deal", conditions=["copd"])
            add_device(conn, "ox-1", patient_nhs_number=NHS)
            conn.commit()
        yield server.url
    finally:
        server.stop("immediate")


def rollup(url: str, view: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        rows = conn.execute(
            f"SELECT bucket, patient_id, metric, n, round(mean::numeric, 6), min, max"
            f" FROM {view} ORDER BY 1, 2, 3"
        ).fetchall()
    return [tuple(r) for r in rows]


def raw(url: str, view: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")  # time_bucket's buckets are UTC days and hours
        rows = conn.execute(
            "SELECT date_trunc(%s, time), patient_id, metric, count(*),"
            " round(avg(value)::numeric, 6), min(value), max(value)"
            " FROM readings GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            (WIDTHS[view],),
        ).fetchall()
    return [tuple(r) for r in rows]


def assert_equal_to_raw(url: str, when: str) -> None:
    for view in WIDTHS:
        assert rollup(url, view) == raw(url, view), f"{view} differs from raw {when}"


def insert(url: str, readings: list[tuple[datetime, float]]) -> None:
    with psycopg.connect(url) as conn:
        (pid,) = conn.execute("SELECT patient_id FROM patients").fetchone() or (0,)
        for i, (at, value) in enumerate(readings):
            conn.execute(
                "INSERT INTO readings (time, patient_id, device_id, metric, value,"
                " received_at, msg_id) VALUES (%s, %s, 'ox-1', 'spo2', %s, now(), %s)",
                (at, pid, value, f"m{uuid.uuid4().hex}-{i}"),
            )
        conn.commit()


def run_policy_jobs(url: str) -> None:
    """The refresh and compression policies' jobs, run now (CALL run_job), as deployed."""
    with psycopg.connect(url, autocommit=True) as conn:
        jobs = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name IN"
            " ('policy_refresh_continuous_aggregate', 'policy_compression') ORDER BY job_id"
        ).fetchall()
        for (job_id,) in jobs:
            for attempt in range(100):  # the server's own scheduler may be running it
                try:
                    conn.execute("CALL run_job(%s)", (job_id,))
                    break
                except psycopg.errors.LockNotAvailable:
                    if attempt == 99:
                        raise
                    time.sleep(0.1)


async def refresh(url: str) -> int:
    """Passes until no dirty bucket is left (a pass skips a bucket whose continuous
    aggregate the server's own policy job is refreshing at that moment)."""
    cleared = 0
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for _ in range(100):
            cleared += await refresh_dirty(conn)
            if dirty(url) == 0:
                break
            await asyncio.sleep(0.1)
    return cleared


def dirty(url: str) -> int:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('rollup_dirty')").fetchone() == (None,):
            return 0  # plain PostgreSQL
        row = conn.execute("SELECT count(*) FROM rollup_dirty").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.timescaledb
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_rollups_equal_raw_after_late_and_backfilled_uploads(
    timescale_db: str, seed: int
) -> None:
    url = timescale_db
    now = datetime.now(UTC).replace(microsecond=0)
    current = [(now - timedelta(minutes=m), 95.0 - m % 3) for m in range(0, 180, 10)]
    late = [(now - timedelta(days=d, hours=h), 90.0 + h) for d in (5, 40) for h in range(3)]
    backfill = [(now - timedelta(days=10, minutes=m), 88.0 + m % 5) for m in range(0, 60, 15)]
    arrivals = current + late + backfill
    random.Random(seed).shuffle(arrivals)  # any arrival order
    first, second = arrivals[: len(arrivals) // 2], arrivals[len(arrivals) // 2 :]
    insert(url, first)
    assert_equal_to_raw(url, "before any refresh")
    run_policy_jobs(url)  # materialises the recent buckets, compresses old chunks
    assert_equal_to_raw(url, "after the policies ran")
    insert(url, second)  # later, into materialised buckets and compressed chunks
    assert_equal_to_raw(url, "after late uploads, before a refresh")
    run_policy_jobs(url)
    assert_equal_to_raw(url, "after the policies ran again")
    assert await refresh(url) > 0
    assert dirty(url) == 0
    assert_equal_to_raw(url, "after the dirty buckets were refreshed")
    insert(url, [(now, 97.0), (now - timedelta(days=40), 85.0)])  # the bucket in progress
    assert_equal_to_raw(url, "after a reading in the bucket in progress")
    await refresh(url)
    assert_equal_to_raw(url, "at the end")
    with psycopg.connect(url) as conn:
        materialised = conn.execute(
            "SELECT count(*) FROM readings_daily_ca WHERE bucket < %s",
            (now - timedelta(days=39),),
        ).fetchone()
    assert materialised == (1,)  # the 40-day-old day reached the aggregate itself


@pytest.mark.timescaledb
async def test_the_service_refreshes_late_buckets_on_its_timer(
    timescale_db: str, broker_url: str
) -> None:
    settings = make_settings(timescale_db, broker_url, rollup_refresh_s=0.2)
    pub = Publisher(broker_url)
    old = datetime.now(UTC) - timedelta(days=45)
    try:
        async with running_service(settings) as service:
            for i in range(3):
                at = old + timedelta(minutes=i)
                payload = reading_payload(f"late-{i}", [("spo2", 93 + i, "%")], measured_at=at)
                pub.publish(settings.readings_topic("ox-1"), payload)
            await async_wait_until(lambda: service.pipeline.stats.stored == 3, what="stored")
            assert_equal_to_raw(timescale_db, "as soon as the late upload is stored")
            await async_wait_until(lambda: dirty(timescale_db) == 0, what="refreshed")
    finally:
        pub.close()
        purge_session(settings)
    assert_equal_to_raw(timescale_db, "after the service's refresh")
    with psycopg.connect(timescale_db) as conn:
        row = conn.execute("SELECT n FROM readings_daily_ca").fetchone()
    assert row == (3,)


async def test_on_plain_postgresql_the_rollups_are_views_and_nothing_is_refreshed(
    db_url: str,
) -> None:
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Late", team="deal", conditions=["copd"])
        add_device(conn, "ox-1", patient_nhs_number=NHS)
        conn.commit()
    now = datetime.now(UTC)
    insert(db_url, [(now - timedelta(days=d), 90.0 + d) for d in (0, 40, 3, 400)])
    assert_equal_to_raw(db_url, "on plain PostgreSQL")
    assert await refresh(db_url) == 0
