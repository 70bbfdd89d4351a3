"""Property, through the running service, broker and database: any bytes published on a
readings or status topic are either stored or quarantined, and the next good message
is stored (issue 12: no single message can stop ingest or hide itself)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from itertools import count

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from devices.payload import parse_reading_message
from devices.registry import add_device, add_patient
from homeward.config import Settings
from homeward.domain import DeviceMessage
from homeward.metrics import CATALOGUE
from ingest.status import StatusUpdate, parse_status_message
from service.wiring import HomewardService
from support import Publisher, make_settings, purge_session, reading_payload, wait_until

NHS = "9434765919"
GOOD = [("spo2", 95, "%")]
SEQ = count()

_numbers = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, -0.0, 5e-324, 1e-300, 1e300, 2**63, 2**64 - 1, 100, 100.0000001])
)
_times = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "0001-01-01T00:00:00-14:00",
            "9999-12-31T23:59:59-14:00",
            "2016-12-31T23:59:60Z",
            "2026-11-22T08:00:00.123456789+23:59",
        ]
    ),
    st.text(max_size=40),
)
_reading = st.fixed_dictionaries(
    {
        "metric": st.sampled_from([*CATALOGUE, "steps", ""]),
        "value": _numbers,
        "unit": st.sampled_from(["%", "/min", "mm[Hg]", "Cel", "[degF]", "kg", "mmol/L", "x"]),
    },
    optional={"flags": st.lists(st.text(max_size=70), max_size=17)},
)
_document = st.fixed_dictionaries(
    {
        "msg_id": st.text(min_size=0, max_size=130),
        "measured_at": _times,
        "readings": st.lists(_reading, min_size=0, max_size=3),
    },
    optional={
        "device_seq": st.integers(min_value=-1, max_value=2**64),
        "battery": _numbers,
        "firmware": st.text(max_size=70),
        "context": st.fixed_dictionaries({}, optional={"on_oxygen": st.booleans()}),
    },
).map(lambda d: json.dumps(d).encode())
_status = st.one_of(
    st.sampled_from([b"online", b"offline", b" Online\n"]),
    st.fixed_dictionaries(
        {"status": st.sampled_from(["online", "offline", "asleep"])},
        optional={"battery": _numbers},
    ).map(lambda d: json.dumps(d).encode()),
)


@st.composite
def _valid_document(draw: st.DrawFn) -> bytes:
    """A message the contract accepts, its fields drawn up to their edges."""
    metric = draw(st.sampled_from(sorted(CATALOGUE)))
    low, high = CATALOGUE[metric].possible
    offset = draw(st.integers(min_value=-14 * 60, max_value=14 * 60))
    at = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(2026, 1, 1))).replace(
        tzinfo=timezone(timedelta(minutes=offset))
    )
    doc = {
        "msg_id": draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=128)),
        "measured_at": at.isoformat(),
        "readings": [
            {
                "metric": metric,
                "value": draw(st.floats(min_value=low, max_value=high)),
                "unit": CATALOGUE[metric].unit,
            }
        ],
        "battery": draw(st.floats(min_value=0, max_value=100)),
        "device_seq": draw(st.integers(min_value=0, max_value=2**63 - 1)),
    }
    return json.dumps(doc).encode()


PAYLOADS = st.one_of(
    st.binary(max_size=300), _document, _status, _valid_document(), _valid_document()
)


@dataclass
class Running:
    settings: Settings
    db_url: str
    pub: Publisher


@pytest.fixture
def running(db_url: str, broker_url: str) -> Iterator[Running]:
    """The service in a thread of its own, so that hypothesis drives it example by example."""
    s = make_settings(db_url, broker_url, quarantine_per_minute=100_000)
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Any Bytes", conditions=["copd"], team="deal")
        add_device(conn, "ox-1", patient_nhs_number=NHS)
        add_device(conn, "ox-2", patient_nhs_number=NHS)
        conn.commit()
    service = HomewardService(s)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failed: list[BaseException] = []

    def main() -> None:
        try:
            loop.run_until_complete(service.run(stop))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=main, name="service")
    thread.start()
    wait_until(lambda: service.source.stats.connected or bool(failed), what="the service")
    assert not failed
    pub = Publisher(broker_url)
    try:
        yield Running(s, db_url, pub)
    finally:
        pub.close()
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        loop.close()
        purge_session(s)
    assert not failed, failed


def _stored(conn: psycopg.Connection[tuple[int]], msg_id: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM readings WHERE device_id = 'ox-1' AND msg_id = %s", (msg_id,)
    ).fetchone()
    return row is not None and row[0] > 0


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(leaf=st.sampled_from(["readings", "status"]), payload=PAYLOADS)
def test_any_bytes_are_stored_or_quarantined_and_the_next_is_stored(
    running: Running, leaf: str, payload: bytes
) -> None:
    s = running.settings
    topic = s.device_topic("ox-1", leaf)
    running.pub.publish(topic, payload)
    good = f"good-{next(SEQ)}"
    running.pub.publish(s.readings_topic("ox-2"), reading_payload(good, GOOD))
    with psycopg.connect(running.db_url, autocommit=True) as conn:

        def next_stored() -> bool:
            row = conn.execute(
                "SELECT count(*) FROM readings WHERE msg_id = %s", (good,)
            ).fetchone()
            return row is not None and row[0] == 1

        wait_until(next_stored, timeout_s=30, what="the next good message")
        quarantined = conn.execute(
            "SELECT reason FROM quarantine WHERE topic = %s AND payload_sha256 = %s",
            (topic, hashlib.sha256(payload).digest()),
        ).fetchone()
        now = datetime.now(UTC)
        if leaf == "readings":
            parsed = parse_reading_message(
                topic, payload, retained=False, now=now, topic_root=s.topic_root
            )
            event(f"readings: {'stored' if isinstance(parsed, DeviceMessage) else 'quarantined'}")
            if isinstance(parsed, DeviceMessage):  # valid: stored (or a duplicate of it)
                assert _stored(conn, parsed.msg_id), parsed
            else:
                assert quarantined is not None, parsed
        else:
            status = parse_status_message(topic, payload, s.topic_root)
            event(f"status: {type(status).__name__}")
            if isinstance(status, StatusUpdate) or status is None:  # recorded, or a clear
                assert quarantined is None
            else:
                assert quarantined is not None, status
