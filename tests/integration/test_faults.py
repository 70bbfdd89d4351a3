"""Fault scenarios of docs/references.md, each with its invariant.

These start their own throwaway PostgreSQL or Mosquitto so they can stop and kill them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devices.registry import add_device, add_patient
from homeward.config import Settings
from homeward.db.migrate import upgrade
from service.wiring import HomewardService
from support import (
    Publisher,
    async_wait_until,
    count_rows,
    ensure_team,
    make_settings,
    reading_payload,
    running_service,
    wait_until,
)
from tools.embedded.mosquitto import EmbeddedMosquitto
from tools.embedded.postgres import EmbeddedPostgres

pytestmark = pytest.mark.slow

NHS = "9434765919"
DEVICES = [f"bp-{i}" for i in range(5)]


def seed(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        ensure_team(conn)  # an embedded database of its own: not the test template
        add_patient(conn, nhs_number=NHS, name="Fault Test", team="deal")
        for device in DEVICES:
            add_device(conn, device, patient_nhs_number=NHS)
        conn.commit()


def messages(settings: Settings, count: int) -> Iterator[tuple[str, bytes]]:
    for i in range(count):
        device = DEVICES[i % len(DEVICES)]
        yield (
            settings.readings_topic(device),
            reading_payload(
                f"m-{i}", [("systolic_bp", 120 + i % 40, "mm[Hg]"), ("diastolic_bp", 80, "mm[Hg]")]
            ),
        )


def service_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEWARD_")}
    env.update(
        HOMEWARD_DATABASE_URL=settings.dsn,
        HOMEWARD_MQTT_URL=settings.mqtt_url or "",
        HOMEWARD_TOPIC_ROOT=settings.topic_root,
        HOMEWARD_MQTT_CLIENT_ID=settings.mqtt_client_id,
        HOMEWARD_MQTT_SHARE_GROUP=settings.mqtt_share_group,
        HOMEWARD_HTTP_PORT="0",
        HOMEWARD_BATCH_SIZE="200",
    )
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "commands.main", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_sigkill_mid_stream_then_restart_stores_every_reading_once(
    db_url: str, own_broker: EmbeddedMosquitto, tmp_path: Path
) -> None:
    seed(db_url)
    settings = make_settings(db_url, own_broker.url)
    total = 3000
    log = tmp_path / "service.log"
    proc = service_process(settings, log)
    publisher = Publisher(own_broker.url)
    published = threading.Event()

    def publish_all() -> None:
        publisher.publish_many(messages(settings, total), window=100)
        published.set()

    thread = threading.Thread(target=publish_all, daemon=True)
    try:
        wait_until(lambda: "MQTT connected" in log.read_text(), what="service connected")
        thread.start()
        wait_until(lambda: count_rows(db_url) >= 600, what="some readings stored")
        proc.send_signal(signal.SIGKILL)  # no chance to flush or acknowledge
        proc.wait(10)
        stored_at_kill = count_rows(db_url)
        assert published.wait(60), "publisher finished while ingest was down"
        assert stored_at_kill < 2 * total
        proc = service_process(settings, log)  # same client id: resumes the session
        wait_until(lambda: count_rows(db_url) >= 2 * total, timeout_s=90, what="all readings")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        publisher.close()
        thread.join(5)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (msg_id, metric)) FROM readings"
        ).fetchone()
    assert row == (2 * total, 2 * total), log.read_text()[-3000:]
    assert proc.returncode == 0, log.read_text()[-3000:]


async def test_database_outage_loses_nothing_and_memory_stays_bounded(
    own_postgres: EmbeddedPostgres, own_broker: EmbeddedMosquitto
) -> None:
    # Our own broker: a stock Mosquitto queues only 1000 messages for an offline or
    # stalled session (max_queued_messages) and drops the rest — see docs/operations.md.
    broker_url = own_broker.url
    db_url = own_postgres.url
    upgrade(db_url)
    seed(db_url)
    receive_maximum = 300
    settings = make_settings(db_url, broker_url, receive_maximum=receive_maximum, batch_size=100)
    total = 4000
    publisher = Publisher(broker_url)
    loop = asyncio.get_running_loop()
    try:
        async with running_service(settings) as service:
            publishing = loop.run_in_executor(
                None, lambda: publisher.publish_many(messages(settings, total), window=100)
            )
            await async_wait_until(lambda: service.pipeline.stats.stored >= 500, what="flowing")
            await loop.run_in_executor(None, own_postgres.stop, "fast")
            await async_wait_until(lambda: not service.pipeline.stats.db_ok, what="outage seen")
            acked_during = service.source.stats.acked
            await asyncio.sleep(3)  # the outage lasts a while; ingest must hold still
            assert service.source.stats.acked == acked_during, "nothing acknowledged while down"
            assert service.pipeline.pending <= receive_maximum
            await loop.run_in_executor(None, own_postgres.start)
            await publishing
            await async_wait_until(
                lambda: count_rows(db_url) >= 2 * total, timeout_s=90, what="all stored"
            )
            assert service.pipeline.stats.db_ok
            assert service.pipeline.stats.max_pending <= receive_maximum
    finally:
        publisher.close()
    assert count_rows(db_url, "SELECT count(DISTINCT (msg_id, metric)) FROM readings") == 2 * total


async def test_starting_while_the_database_is_down_waits_for_it_and_loses_nothing(
    own_postgres: EmbeddedPostgres, own_broker: EmbeddedMosquitto
) -> None:
    """Start-up waits for the database (HOMEWARD_STARTUP_TIMEOUT_S) before it serves or
    subscribes; the broker keeps the reading meanwhile, and it is stored — rules
    applied — once the database answers."""
    db_url = own_postgres.url
    upgrade(db_url)
    seed(db_url)
    settings = make_settings(db_url, own_broker.url, startup_timeout_s=60)
    async with running_service(settings):
        pass  # the first run leaves the persistent session that keeps messages for us
    own_postgres.stop("fast")
    publisher = Publisher(own_broker.url)
    loop = asyncio.get_running_loop()
    service = HomewardService(settings)
    stop, ready = asyncio.Event(), asyncio.Event()
    try:
        publisher.publish(
            settings.readings_topic(DEVICES[0]),
            reading_payload("down-1", [("systolic_bp", 190, "mm[Hg]")]),
        )
        task = asyncio.create_task(service.run(stop, ready=ready))
        await asyncio.sleep(1.5)  # start-up is waiting: nothing served or subscribed
        assert not ready.is_set()
        assert not task.done()
        assert service.source.stats.connects == 0
        assert service.source.stats.received == 0
        await loop.run_in_executor(None, own_postgres.start)
        await asyncio.wait_for(ready.wait(), 30)
        await async_wait_until(
            lambda: service.pipeline.stats.stored == 1, what="stored after recovery"
        )
        assert service.status()["rules"]["warmed_patients"] == 1
        assert service.store.stage_errors == 0
        stop.set()
        await task
    finally:
        stop.set()
        publisher.close()
    assert count_rows(db_url, "SELECT count(*) FROM readings WHERE msg_id = 'down-1'") == 1
