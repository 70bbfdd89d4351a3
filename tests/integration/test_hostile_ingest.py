"""Hostile input through the real service, broker and database (issue 12, ingest items):
every message at any edge is either stored or quarantined, the next good message is
stored, and a stall is visible on /health instead of hiding behind "ok"."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import psycopg
import pytest

from devices.payload import MAX_DEVICE_SEQ, parse_reading_message
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
GOOD = [("spo2", 95, "%")]


def doc(msg_id: str, **fields: object) -> bytes:
    base: dict[str, Any] = {
        "msg_id": msg_id,
        "measured_at": datetime.now(UTC).isoformat(),
        "readings": [{"metric": "spo2", "value": 95, "unit": "%"}],
    }
    base.update(fields)
    return orjson.dumps(base)


def spo2(value: object) -> list[dict[str, Any]]:
    return [{"metric": "spo2", "value": value, "unit": "%"}]


# (msg_id, payload, stored?) — edges of every type: the calendar's ends and offsets at
# them, leap seconds, fractions, huge and tiny numbers, the longest strings.
EDGES: list[tuple[str, bytes, bool]] = [
    ("y1+14", doc("y1+14", measured_at="0001-01-01T00:00:00+14:00"), False),  # before year 1 UTC
    ("y1-14", doc("y1-14", measured_at="0001-01-01T00:00:00-14:00"), True),
    ("y1Z", doc("y1Z", measured_at="0001-01-01T00:00:00Z"), True),
    ("y1+2359", doc("y1+2359", measured_at="0001-01-01T23:59:00+23:59"), True),
    ("y9999-14", doc("y9999-14", measured_at="9999-12-31T23:59:59-14:00"), False),
    ("y9999+14", doc("y9999+14", measured_at="9999-12-31T23:59:59+14:00"), False),  # future
    ("y0", doc("y0", measured_at="0000-01-01T00:00:00Z"), False),
    ("off24", doc("off24", measured_at="2026-01-01T00:00:00+24:00"), False),
    ("offsec", doc("offsec", measured_at="2026-01-01T00:00:00+01:30:15"), False),
    ("leap", doc("leap", measured_at="2016-12-31T23:59:60Z"), False),
    ("h24", doc("h24", measured_at="2026-01-01T24:00:00Z"), False),
    ("feb30", doc("feb30", measured_at="2026-02-30T08:00:00Z"), False),
    ("week", doc("week", measured_at="2026-W01-1T00:00:00Z"), False),
    ("basic", doc("basic", measured_at="20260101T000000Z"), False),
    ("nanos", doc("nanos", measured_at="2026-01-01T00:00:00.123456789+00:00"), True),
    ("tiny", doc("tiny", readings=spo2(5e-324)), True),  # possible, flagged implausible
    ("huge", doc("huge", readings=spo2(1.7976931348623157e308)), False),
    ("u64", doc("u64", readings=spo2(18446744073709551615)), False),
    ("seq-max", doc("seq-max", device_seq=MAX_DEVICE_SEQ), True),
    ("seq-over", doc("seq-over", device_seq=MAX_DEVICE_SEQ + 1), False),
    ("batt-tiny", doc("batt-tiny", battery=1e-300), True),  # real: 0.0
    ("batt-sub", doc("batt-sub", battery=5e-324), True),
    ("batt-huge", doc("batt-huge", battery=1e300), False),
    ("\U0001f4a5" * 127 + "x", doc("\U0001f4a5" * 127 + "x"), True),  # 128 characters
    ("id129", doc("id129" + "x" * 124), False),
    ("flags", doc("flags", readings=[{**spo2(95)[0], "flags": ["\U0001f4a5" * 64] * 16}]), True),
    ("fw", doc("fw", firmware="\u00e9" * 64), True),
]


@pytest.fixture
def settings(db_url: str, broker_url: str) -> Iterator[Settings]:
    s = make_settings(db_url, broker_url, ingest_stall_after_s=1.0)
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Hostile Ingest", conditions=["copd"], team="deal")
        add_device(conn, "ox-1", patient_nhs_number=NHS)
        add_device(conn, "ox-2", patient_nhs_number=NHS)
        conn.commit()
    yield s
    purge_session(s)


def outcomes(db_url: str) -> tuple[set[str], dict[str, str]]:
    with psycopg.connect(db_url) as conn:
        stored = {r[0] for r in conn.execute("SELECT DISTINCT msg_id FROM readings")}
        held: dict[str, str] = dict(
            conn.execute("SELECT coalesce(msg_id, topic), reason FROM quarantine")
        )
    return stored, held


async def test_every_edge_value_is_stored_or_quarantined_and_the_next_is_stored(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    """Finding 1: a timestamp at the calendar's edge (year 1 at +14:00) stopped ingest."""
    pub = Publisher(broker_url)
    try:
        async with running_service(settings) as service:
            for n, (_msg_id, payload, _ok) in enumerate(EDGES):
                pub.publish(settings.readings_topic("ox-1"), payload)
                pub.publish(settings.readings_topic("ox-2"), reading_payload(f"good-{n}", GOOD))
            good = sum(ok for _m, _p, ok in EDGES)

            def settled() -> bool:
                stored, held = outcomes(db_url)
                return len(stored) == len(EDGES) + good and len(held) == len(EDGES) - good

            await async_wait_until(settled, what="every message stored or quarantined")
            assert service.pipeline.stats.parser_errors == 0
            assert service.pipeline.stats.isolated == 0
            assert service.store.stage_errors == 0
    finally:
        pub.close()
    stored, _held = outcomes(db_url)
    for msg_id, _payload, ok in EDGES:
        assert (msg_id in stored) is ok, msg_id[:10]
    assert {f"good-{n}" for n in range(len(EDGES))} <= stored
    with psycopg.connect(db_url) as conn:
        flags = conn.execute("SELECT flags FROM readings WHERE msg_id = 'tiny'").fetchone()
        first = conn.execute("SELECT min(time) FROM readings").fetchone()
    assert flags is not None
    assert "implausible" in flags[0]
    assert first is not None
    assert first[0] == datetime(1, 1, 1, tzinfo=UTC)


STATUSES: list[tuple[bytes, str | None]] = [
    (orjson.dumps({"status": "online", "battery": 1e300}), "schema"),  # finding 2
    (orjson.dumps({"status": "online", "battery": -1}), "schema"),
    (orjson.dumps({"status": "online", "battery": "80"}), "schema"),
    (orjson.dumps({"status": "online", "battery": True}), "schema"),
    (orjson.dumps({"status": "asleep"}), "schema"),
    (orjson.dumps({"status": "online", "extra": 1}), "schema"),
    (orjson.dumps(["online"]), "schema"),
    (b"sleeping", "malformed_json"),
    (b"\xff\xfe", "not_utf8"),
    (b"o" * 2000, "oversized"),
    (orjson.dumps({"status": "online", "battery": 1e-300}), None),  # stored as 0 %
    (orjson.dumps({"status": "offline", "battery": 42.04}), None),
]


async def test_a_bad_status_is_quarantined_and_readings_flow(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    """Finding 2: a status with battery 1e300 left every later reading unstored."""
    pub = Publisher(broker_url)
    topic = settings.device_topic("ox-1", "status")
    try:
        async with running_service(settings) as service:
            for n, (payload, _reason) in enumerate(STATUSES):
                pub.publish(topic, payload)
                pub.publish(settings.readings_topic("ox-2"), reading_payload(f"good-{n}", GOOD))
            bad = sum(reason is not None for _p, reason in STATUSES)
            await async_wait_until(
                lambda: (
                    count_rows(db_url) == len(STATUSES)
                    and count_rows(db_url, "SELECT count(*) FROM quarantine") == bad
                ),
                what="every reading stored, every bad status quarantined",
            )
            await async_wait_until(
                lambda: (
                    count_rows(db_url, "SELECT count(*) FROM devices WHERE status IS NOT NULL") == 1
                ),
                timeout_s=15,
                what="ox-1's status",
            )
            assert service.pipeline.stats.isolated == 0
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        reasons = [r[0] for r in conn.execute("SELECT reason FROM quarantine ORDER BY 1")]
        row = conn.execute(
            "SELECT status, battery FROM devices WHERE device_id = 'ox-1'"
        ).fetchone()
        devices = {r[0] for r in conn.execute("SELECT device_id FROM quarantine")}
    assert reasons == sorted(r for _p, r in STATUSES if r is not None)
    assert devices == {"ox-1"}
    assert row == ("offline", pytest.approx(42.0))


POISON_TRIGGER = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.msg_id LIKE 'poison%' THEN RAISE EXCEPTION 'poison %', NEW.msg_id; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON readings
  FOR EACH ROW EXECUTE FUNCTION refuse_poison();
CREATE FUNCTION refuse_firmware() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.firmware = 'poison' THEN RAISE EXCEPTION 'poison firmware'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_firmware BEFORE UPDATE ON devices
  FOR EACH ROW EXECUTE FUNCTION refuse_firmware();
"""


async def test_a_batch_the_database_refuses_is_split_to_the_one_message(
    db_url: str, broker_url: str
) -> None:
    """Finding 3: a message that passes validation but that the database refuses (a
    trigger stands in for whatever a future bug lets through) is isolated by splitting
    the batch; it is quarantined, every other message is stored, all are acknowledged."""
    # One batch of all 65 messages: it fills before the 2 s linger ends.
    settings = make_settings(db_url, broker_url, flush_interval_ms=2000, batch_size=65)
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Hostile Ingest", team="deal")
        add_device(conn, "ox-1", patient_nhs_number=NHS)
        conn.execute(POISON_TRIGGER)
        conn.commit()
    ids = [f"m{n}" for n in range(64)]
    ids[17], ids[40] = "poison-a", "poison-b"
    pub = Publisher(broker_url)
    try:
        async with running_service(settings) as service:
            topic = settings.readings_topic("ox-1")
            pub.publish_many(
                [(topic, reading_payload(i, GOOD, firmware="1.0")) for i in ids]
                + [(topic, reading_payload("fw", GOOD, firmware="poison"))]
            )
            await async_wait_until(
                lambda: service.source.stats.acked == len(ids) + 1, what="all acknowledged"
            )
            stats = service.pipeline.stats
            assert stats.batches == 1
            assert stats.batches_split == 1
            assert stats.isolated == 2
            assert stats.unstorable == 0
            assert stats.activity_dropped == 1  # the refused firmware: counted, not a stall
    finally:
        pub.close()
        purge_session(settings)
    stored, held = outcomes(db_url)
    assert stored == {i for i in ids if not i.startswith("poison")} | {"fw"}
    assert held == {"poison-a": "storage_error", "poison-b": "storage_error"}


async def test_health_says_degraded_while_ingest_makes_no_progress(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    """Finding 3: while messages wait and nothing commits, /health is 503 and says why;
    once batches commit again it is 200."""
    pub = Publisher(broker_url)
    try:
        async with running_service(settings) as service, aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{service.http_port}/health"

            async def health() -> tuple[int, dict[str, Any]]:
                async with http.get(url) as response:
                    return response.status, await response.json()

            status, body = await health()
            assert status == 200
            assert body["ingest"]["progress"]["stalled"] is False
            with psycopg.connect(db_url) as blocker:
                blocker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
                pub.publish(settings.readings_topic("ox-1"), reading_payload("held", GOOD))
                seen: list[tuple[int, dict[str, Any]]] = []

                deadline = datetime.now(UTC) + timedelta(seconds=20)
                while not seen or seen[-1][0] != 503:
                    assert datetime.now(UTC) < deadline, seen[-1]
                    await asyncio.sleep(0.05)
                    seen.append(await health())
                status, body = seen[-1]
                progress = body["ingest"]["progress"]
                assert body["status"] == "degraded"
                assert any(p.startswith("ingest: stalled") for p in body["problems"])
                assert progress["stalled"] is True
                assert progress["waiting"] == 1
                assert body["database"]["connected"] is True
                blocker.rollback()
            await async_wait_until(lambda: count_rows(db_url) == 1, what="the held reading")
            status, body = await health()
            assert status == 200, body
    finally:
        pub.close()
    assert service.pipeline.stats.batches_split == 0


async def test_quarantine_keeps_a_bounded_prefix_and_a_device_only_its_allowance(
    db_url: str, broker_url: str
) -> None:
    """Finding 15: twenty 1 MB rejected messages kept 20 MB. Now a row keeps at most
    HOMEWARD_QUARANTINE_KEEP_BYTES of a payload (with its whole size and hash), a device
    adds at most HOMEWARD_QUARANTINE_PER_MINUTE rows a minute, and the rest are counted
    — on /health and in one rate_limited row — never dropped silently."""
    settings = make_settings(
        db_url, broker_url, quarantine_keep_bytes=1024, quarantine_per_minute=5
    )
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Hostile Ingest", team="deal")
        add_device(conn, "ox-1", patient_nhs_number=NHS)
        add_device(conn, "ox-2", patient_nhs_number=NHS)
        conn.commit()
    big = [b"%d" % n + b"x" * 1_000_000 for n in range(20)]
    pub = Publisher(broker_url)
    try:
        async with running_service(settings) as service, aiohttp.ClientSession() as http:
            for payload in big:
                pub.publish(settings.readings_topic("ox-1"), payload)
            pub.publish(settings.readings_topic("ox-2"), b"not json")  # its own allowance
            pub.publish(settings.readings_topic("ox-1"), reading_payload("after", GOOD))
            await async_wait_until(lambda: count_rows(db_url) == 1, what="the next good one")
            await async_wait_until(
                lambda: service.source.stats.acked == len(big) + 2, what="all acknowledged"
            )
            async with http.get(f"http://127.0.0.1:{service.http_port}/health") as response:
                body = await response.json()
    finally:
        pub.close()
        purge_session(settings)
    quarantine = body["ingest"]["quarantine"]
    assert quarantine["rate_limited"] == 15
    assert quarantine["rate_limited_by_device"] == {"ox-1": 15}
    assert quarantine["rows_kept"] == 6
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT device_id, reason, octet_length(payload), payload_bytes, times_seen"
            " FROM quarantine ORDER BY quarantine_id"
        ).fetchall()
        total = conn.execute("SELECT sum(octet_length(payload)) FROM quarantine").fetchone()
    kept = [r for r in rows if r[1] == "oversized"]
    assert kept == [("ox-1", "oversized", 1024, len(p), 1) for p in big[:5]]
    assert ("ox-2", "malformed_json", 8, 8, 1) in rows
    limited = [r for r in rows if r[1] == "rate_limited"]
    assert [(r[0], r[4]) for r in limited] == [("ox-1", 15)]
    assert total is not None
    assert total[0] <= 6 * 1024


async def test_a_validator_that_raises_quarantines_the_message_not_ingest(
    settings: Settings, db_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth for finding 1: should validation itself fail on some input (a
    bug), the message is quarantined as parser_error and ingest goes on."""

    def failing(topic: str, payload: bytes, **kwargs: Any) -> Any:
        if b"trip" in payload:
            raise OverflowError("a validator bug")
        return parse_reading_message(topic, payload, **kwargs)

    monkeypatch.setattr("ingest.pipeline.parse_reading_message", failing)
    pub = Publisher(broker_url)
    try:
        async with running_service(settings) as service:
            pub.publish(settings.readings_topic("ox-1"), reading_payload("trip", GOOD))
            pub.publish(settings.readings_topic("ox-1"), reading_payload("after", GOOD))
            await async_wait_until(lambda: count_rows(db_url) == 1, what="the next one")
            assert service.pipeline.stats.parser_errors == 1
    finally:
        pub.close()
    stored, held = outcomes(db_url)
    assert stored == {"after"}
    assert list(held.values()) == ["parser_error"]
