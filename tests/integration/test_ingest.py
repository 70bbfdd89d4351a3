"""Publish over a real broker → rows in a real PostgreSQL, exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from devices.registry import add_device, add_patient
from homeward.config import Settings
from ingest.mqtt_source import Inbound
from ingest.pipeline import IngestPipeline
from ingest.writer import BatchStore
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
OTHER_NHS = "9434765870"


def register(db_url: str, device_id: str = "bp-1", nhs: str = NHS) -> None:
    with psycopg.connect(db_url) as conn:
        add_patient(
            conn, nhs_number=nhs, name="Test Patient", conditions=["hypertension"], team="deal"
        )
        add_device(conn, device_id, patient_nhs_number=nhs)
        conn.commit()


@pytest.fixture
def settings(db_url: str, broker_url: str) -> Iterator[Settings]:
    s = make_settings(db_url, broker_url)
    yield s
    purge_session(s)


BP = [("systolic_bp", 152, "mm[Hg]"), ("diastolic_bp", 94, "mm[Hg]"), ("heart_rate", 88, "/min")]


async def test_each_reading_stored_once_even_when_delivered_twice(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    register(db_url)
    pub = Publisher(broker_url)
    topic = settings.readings_topic("bp-1")
    try:
        async with running_service(settings) as service:
            payload = reading_payload("bp-000184", BP)
            pub.publish(topic, payload)
            pub.publish(topic, payload)  # the same message again (a device retry)
            await async_wait_until(
                lambda: service.pipeline.stats.batches >= 1 and service.source.stats.acked >= 2,
                what="two acks",
            )
            await async_wait_until(lambda: count_rows(db_url) == 3, what="3 rows")
            assert service.pipeline.stats.duplicates == 3
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT metric, value, device_id, msg_id FROM readings ORDER BY metric"
        ).fetchall()
    assert rows == [
        ("diastolic_bp", 94.0, "bp-1", "bp-000184"),
        ("heart_rate", 88.0, "bp-1", "bp-000184"),
        ("systolic_bp", 152.0, "bp-1", "bp-000184"),
    ]


async def test_units_are_converted_and_flags_kept(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    register(db_url, "sc-1")
    pub = Publisher(broker_url)
    try:
        async with running_service(settings):
            pub.publish(
                settings.readings_topic("sc-1"),
                reading_payload("w-1", [("body_weight", 176.37, "[lb_av]")]),
            )
            await async_wait_until(lambda: count_rows(db_url) == 1, what="1 row")
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        value = conn.execute("SELECT value FROM readings").fetchone()
    assert value is not None
    assert value[0] == pytest.approx(80.0, abs=0.01)


async def test_unknown_unbound_and_mismatched_devices_go_to_quarantine(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    register(db_url, "bp-1")
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO devices (device_id) VALUES ('bp-unbound')")
        add_patient(conn, nhs_number=OTHER_NHS, name="Other Patient", team="deal")
        conn.commit()
    pub = Publisher(broker_url)
    try:
        async with running_service(settings):
            pub.publish(settings.readings_topic("bp-ghost"), reading_payload("g-1", BP))
            pub.publish(settings.readings_topic("bp-unbound"), reading_payload("u-1", BP))
            pub.publish(
                settings.readings_topic("bp-1"),
                reading_payload("m-1", BP, patient_id=OTHER_NHS),
            )
            pub.publish(settings.readings_topic("bp-1"), reading_payload("ok-1", BP))
            await async_wait_until(
                lambda: count_rows(db_url, "SELECT count(*) FROM quarantine") == 3,
                what="3 quarantined",
            )
            await async_wait_until(lambda: count_rows(db_url) == 3, what="good message stored")
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        reasons: dict[str, str] = dict(
            conn.execute("SELECT msg_id, reason FROM quarantine").fetchall()
        )
        security = conn.execute(
            "SELECT security_event FROM quarantine WHERE msg_id = 'm-1'"
        ).fetchone()
    assert reasons == {
        "g-1": "unknown_device",
        "u-1": "unbound_device",
        "m-1": "patient_mismatch",
    }
    assert security == (True,)


async def test_binding_is_resolved_at_the_time_of_measurement(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    """A device handed to a new patient: old readings stay with the old patient."""
    register(db_url, "bp-1", NHS)
    handover = datetime.now(UTC) - timedelta(hours=1)
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=OTHER_NHS, name="Second Patient", team="deal")
        add_device(conn, "bp-1", patient_nhs_number=OTHER_NHS, valid_from=handover)
        conn.commit()
    pub = Publisher(broker_url)
    try:
        async with running_service(settings):
            topic = settings.readings_topic("bp-1")
            pub.publish(
                topic, reading_payload("old", BP, measured_at=handover - timedelta(hours=2))
            )
            pub.publish(topic, reading_payload("new", BP))
            await async_wait_until(lambda: count_rows(db_url) == 6, what="6 rows")
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        owners: dict[str, str] = dict(
            conn.execute(
                "SELECT DISTINCT r.msg_id, p.nhs_number FROM readings r"
                " JOIN patients p USING (patient_id)"
            ).fetchall()
        )
    assert owners == {"old": NHS, "new": OTHER_NHS}


async def test_batches_are_stored_and_acknowledged_in_arrival_order(db_url: str) -> None:
    """Messages queued raw, validated as their batch forms — the next batch while one is
    in the database — and acknowledged after their commit, in the order they came."""
    register(db_url)
    settings = make_settings(db_url, "mqtt://127.0.0.1:1", batch_size=10)
    acked: list[int] = []

    def ack(messages: list[Inbound]) -> int:
        acked.extend(m.mid for m in messages)
        return len(messages)

    store = BatchStore(settings.dsn)
    pipeline = IngestPipeline(settings, store, ack)
    start = datetime.now(UTC) - timedelta(minutes=5)
    topic = settings.device_topic("bp-1", "readings")
    for i in range(55):
        payload = reading_payload(f"order-{i}", BP, measured_at=start + timedelta(seconds=i))
        pipeline.submit(Inbound(i + 1, 1, topic, payload, False, 1, time.time()))
    writer = asyncio.create_task(pipeline.run())
    await pipeline.stop()
    await writer
    await store.close()
    assert acked == list(range(1, 56))
    assert pipeline.stats.batches == 6
    assert count_rows(db_url) == 55 * len(BP)


async def test_device_activity_is_recorded_with_the_batches(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    """Last message, battery, firmware and status reach ``devices`` (what the silence
    check reads), a bounded number of devices per batch (ingest/activity.py)."""
    with psycopg.connect(db_url) as conn:
        add_patient(
            conn, nhs_number=NHS, name="Test Patient", conditions=["hypertension"], team="deal"
        )
        for device in ("bp-1", "bp-2", "bp-3"):
            add_device(conn, device, patient_nhs_number=NHS)
        conn.commit()
    pub = Publisher(broker_url)
    began = datetime.now(UTC)
    try:
        async with running_service(settings) as service:
            for n, device in enumerate(("bp-1", "bp-2", "bp-3")):
                payload = reading_payload(f"m{n}", BP, battery=60 + n, firmware=f"1.{n}")
                pub.publish(settings.readings_topic(device), payload)
            pub.publish(settings.device_topic("bp-3", "status"), b"offline", retain=True)
            await async_wait_until(lambda: service.source.stats.acked >= 4, what="four acks")

            def recorded() -> int:
                return count_rows(
                    db_url, "SELECT count(*) FROM devices WHERE last_msg_at IS NOT NULL"
                )

            await async_wait_until(lambda: recorded() == 3, what="activity of three devices")
            await async_wait_until(
                lambda: (
                    count_rows(db_url, "SELECT count(*) FROM devices WHERE status IS NOT NULL") == 1
                ),
                what="bp-3's status",
            )
    finally:
        pub.publish(settings.device_topic("bp-3", "status"), b"", retain=True)  # clear it
        pub.close()
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT device_id, battery, firmware, status, last_msg_at >= %s FROM devices"
            " ORDER BY device_id",
            (began - timedelta(seconds=1),),
        ).fetchall()
    assert rows == [
        ("bp-1", 60.0, "1.0", None, True),
        ("bp-2", 61.0, "1.1", None, True),
        ("bp-3", 62.0, "1.2", "offline", True),
    ]
