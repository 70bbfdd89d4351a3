"""Gaps and conflicts are visible (issue 14 item 9), through the running service.

``device_seq`` is stored with each reading; a hole in a device's numbers that stays
open past the grace period is a data-gap technical alert for the patient's team; a
redelivery with the same key and another value is quarantined as a conflict (a
security event), never counted as a duplicate; a payload with a repeated key is
quarantined unread.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts import adherence
from alerts.data_gaps import GAP_GRACE_S
from devices.registry import add_device, add_patient
from homeward.config import Settings
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
AT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture
def settings(db_url: str, broker_url: str) -> Iterator[Settings]:
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Seq Patient", team="deal")
        add_device(conn, "ox-1", patient_nhs_number=NHS)
        conn.commit()
    s = make_settings(db_url, broker_url)
    yield s
    purge_session(s)


def spo2(seq: int | None, value: float = 96, msg_id: str | None = None) -> bytes:
    extra = {} if seq is None else {"device_seq": seq}
    return reading_payload(
        msg_id or f"ox-{seq}",
        [("spo2", value, "%")],
        measured_at=AT + timedelta(minutes=seq or 0),
        **extra,
    )


def gaps(db_url: str) -> tuple[int, str] | None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT high, missing::text FROM device_sequences WHERE device_id = 'ox-1'"
        ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


async def run_gap_check(db_url: str, now: datetime) -> int:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        return await adherence.check(conn, now)


def gap_alerts(db_url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(db_url) as conn:
        return [
            (str(r[0]), str(r[1]), str(r[2]))
            for r in conn.execute(
                "SELECT priority, kind, message FROM alerts WHERE kind = 'data_gap'"
            ).fetchall()
        ]


async def test_sequence_numbers_are_stored_and_a_lasting_gap_raises_a_technical_alert(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    pub = Publisher(broker_url)
    topic = settings.readings_topic("ox-1")
    try:
        async with running_service(settings):
            for seq in (1, 2, 5, 3):  # 4 never comes; 3 comes late and fills its hole
                pub.publish(topic, spo2(seq))
            await async_wait_until(lambda: count_rows(db_url) == 4, what="four readings")
            await async_wait_until(lambda: gaps(db_url) == (5, "{[4,5)}"), what="the hole")
    finally:
        pub.close()
    stored = "SELECT count(*) FROM readings WHERE device_seq IS NOT NULL"
    assert count_rows(db_url, stored) == 4
    now = datetime.now(UTC)
    await run_gap_check(db_url, now)  # the adherence pass, as the timer runs it
    assert gap_alerts(db_url) == []  # within the grace: a late delivery may fill it
    later = now + timedelta(seconds=GAP_GRACE_S + 1)
    await run_gap_check(db_url, later)
    [(priority, kind, message)] = gap_alerts(db_url)
    assert (priority, kind) == ("technical", "data_gap")
    assert "1 message never received" in message
    assert "numbers 4)" in message
    with psycopg.connect(db_url) as conn:
        events = "SELECT count(*) FROM alert_events e JOIN alerts a USING (alert_id)"
        before = conn.execute(events + " WHERE a.kind = 'data_gap'").fetchone()
    await run_gap_check(db_url, later + timedelta(minutes=1))
    with psycopg.connect(db_url) as conn:
        after = conn.execute(events + " WHERE a.kind = 'data_gap'").fetchone()
    assert before == after == (1,)  # one alert, raised once per hole


async def test_a_redelivery_with_another_value_is_a_conflict_not_a_duplicate(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    pub = Publisher(broker_url)
    topic = settings.readings_topic("ox-1")
    try:
        async with running_service(settings) as service:
            pub.publish(topic, spo2(7, 96))
            await async_wait_until(lambda: count_rows(db_url) == 1, what="the original")
            pub.publish(topic, spo2(7, 96))  # a true redelivery: a duplicate
            pub.publish(topic, spo2(7, 81))  # same key, another value: a conflict
            await async_wait_until(lambda: service.pipeline.stats.quarantined == 1, what="conflict")
            await async_wait_until(lambda: service.pipeline.stats.batches >= 2, what="batches")
            assert service.pipeline.stats.duplicates == 1
    finally:
        pub.close()
    assert count_rows(db_url, "SELECT count(*) FROM readings WHERE value = 96") == 1
    assert count_rows(db_url, "SELECT count(*) FROM readings WHERE value = 81") == 0
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT reason, security_event, detail FROM quarantine").fetchone()
    assert row is not None
    assert row[:2] == ("conflict", True)
    assert "spo2 stored 96" in row[2]
    assert "offered 81" in row[2]


async def test_a_conflicting_message_stores_none_of_its_readings(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    """Its other, new metrics are not stored either: the whole message is in doubt."""
    pub = Publisher(broker_url)
    topic = settings.readings_topic("ox-1")
    at = AT.isoformat()
    try:
        async with running_service(settings) as service:
            pub.publish(topic, reading_payload("m1", [("spo2", 96, "%")], measured_at=AT))
            await async_wait_until(lambda: count_rows(db_url) == 1, what="the original")
            pub.publish(
                topic,
                reading_payload(
                    "m1", [("spo2", 90, "%"), ("heart_rate", 70, "/min")], measured_at=AT
                ),
            )
            await async_wait_until(lambda: service.pipeline.stats.quarantined == 1, what="conflict")
    finally:
        pub.close()
    assert count_rows(db_url) == 1, at
    assert count_rows(db_url, "SELECT count(*) FROM readings WHERE metric = 'heart_rate'") == 0


async def test_a_payload_with_a_repeated_key_is_quarantined_unread(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    pub = Publisher(broker_url)
    topic = settings.readings_topic("ox-1")
    ambiguous = (
        b'{"msg_id": "dup-1", "measured_at": "' + AT.isoformat().encode() + b'",'
        b' "readings": [{"metric": "spo2", "value": 97, "value": 84, "unit": "%"}]}'
    )
    try:
        async with running_service(settings) as service:
            pub.publish(topic, ambiguous)
            pub.publish(topic, spo2(1))
            await async_wait_until(lambda: count_rows(db_url) == 1, what="the good one")
            await async_wait_until(lambda: service.pipeline.stats.quarantined == 1, what="kept")
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT reason, msg_id, detail FROM quarantine").fetchone()
    assert row is not None
    assert row[:2] == ("ambiguous_json", "dup-1")
    assert "'value' appears twice" in row[2]
