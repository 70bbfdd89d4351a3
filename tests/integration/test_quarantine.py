"""Bad input over a real broker: every message kept in quarantine with its reason, and
the good messages around them still stored (a poison message never blocks the stream)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
from click.testing import CliRunner

from commands.main import cli
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
OTHER = "4010232137"
GOOD = [("spo2", 95, "%"), ("heart_rate", 80, "/min")]


def now_iso(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


def doc(**fields: object) -> bytes:
    base: dict[str, object] = {
        "msg_id": "m",
        "measured_at": now_iso(),
        "readings": [{"metric": "spo2", "value": 95, "unit": "%"}],
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


def one(metric: str, value: object, unit: str) -> list[dict[str, object]]:
    return [{"metric": metric, "value": value, "unit": unit}]


# (label, device, payload, retained, expected reason) — the categories of docs/references.md.
BAD: list[tuple[str, str, bytes, bool, str]] = [
    ("not JSON", "ox-1", b"spo2=95", False, "malformed_json"),
    ("truncated", "ox-1", doc(msg_id="t1")[:-7], False, "malformed_json"),
    ("not UTF-8", "ox-1", b'{"msg_id": "\xff\xfe"}', False, "not_utf8"),
    (
        "NaN",
        "ox-1",
        b'{"msg_id":"n1","measured_at":"'
        + now_iso().encode()
        + b'","readings":[{"metric":"spo2","value":NaN,"unit":"%"}]}',
        False,
        "malformed_json",
    ),
    ("JSON array", "ox-1", b"[1, 2, 3]", False, "schema"),
    ("missing msg_id", "ox-1", doc(msg_id=None), False, "schema"),
    (
        "value is a string",
        "ox-1",
        doc(msg_id="s1", readings=one("spo2", "95", "%")),
        False,
        "schema",
    ),
    ("value is a bool", "ox-1", doc(msg_id="s2", readings=one("spo2", True, "%")), False, "schema"),
    (
        "missing unit",
        "ox-1",
        doc(msg_id="s3", readings=[{"metric": "spo2", "value": 95}]),
        False,
        "schema",
    ),
    ("no readings", "ox-1", doc(msg_id="s4", readings=[]), False, "schema"),
    ("unknown field", "ox-1", doc(msg_id="s5", colour="blue"), False, "schema"),
    ("no time zone", "ox-1", doc(msg_id="s6", measured_at="2026-11-22T08:14:05"), False, "schema"),
    (
        "bad consciousness",
        "ox-1",
        doc(msg_id="s7", context={"consciousness": "X"}),
        False,
        "schema",
    ),
    (
        "deeply nested",
        "ox-1",
        doc(msg_id="s8", context={"a": [[[[[[[[[[1]]]]]]]]]]}),
        False,
        "schema",
    ),
    ("bad patient id", "ox-1", doc(msg_id="s9", patient_id="9434765918"), False, "schema"),
    (
        "unknown metric",
        "ox-1",
        doc(msg_id="u1", readings=one("ketones", 1.0, "mmol/L")),
        False,
        "unknown_metric",
    ),
    (
        "unknown unit",
        "ox-1",
        doc(msg_id="u2", readings=one("body_weight", 80, "lbs")),
        False,
        "unknown_unit",
    ),
    (
        "unit for another metric",
        "ox-1",
        doc(msg_id="u3", readings=one("spo2", 95, "mmol/L")),
        False,
        "unknown_unit",
    ),
    (
        "impossible value",
        "ox-1",
        doc(msg_id="i1", readings=one("spo2", 140, "%")),
        False,
        "impossible_value",
    ),
    (
        "negative heart rate",
        "ox-1",
        doc(msg_id="i2", readings=one("heart_rate", -5, "/min")),
        False,
        "impossible_value",
    ),
    ("far future", "ox-1", doc(msg_id="f1", measured_at=now_iso(3600)), False, "future_timestamp"),
    ("NUL in text", "ox-1", doc(msg_id="nul\u0000"), False, "unstorable_text"),
    ("oversized", "ox-1", doc(msg_id="big", firmware="x" * 20_000), False, "oversized"),
    ("retained reading", "ox-1", doc(msg_id="r1"), True, "retained"),
    ("unknown device", "ghost-1", doc(msg_id="g1"), False, "unknown_device"),
    (
        "names another patient",
        "ox-1",
        doc(msg_id="p1", patient_id=OTHER),
        False,
        "patient_mismatch",
    ),
]


@pytest.fixture
def settings(db_url: str, broker_url: str) -> Iterator[Settings]:
    s = make_settings(db_url, broker_url)
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Quarantine Test")
        add_patient(conn, nhs_number=OTHER, name="Someone Else")
        add_device(conn, "ox-1", patient_nhs_number=NHS)
        conn.commit()
    yield s
    purge_session(s)


async def test_every_bad_input_is_quarantined_with_its_reason_and_the_stream_flows(
    settings: Settings, db_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(BAD) >= 20
    pub = Publisher(broker_url)
    try:
        async with running_service(settings):
            for i, (_label, device, payload, retained, _reason) in enumerate(BAD):
                pub.publish(settings.readings_topic(device), payload, retain=retained)
                # A good message after every bad one: none may be held up.
                pub.publish(settings.readings_topic("ox-1"), reading_payload(f"good-{i}", GOOD))
            try:
                await async_wait_until(
                    lambda: count_rows(db_url, "SELECT count(*) FROM quarantine") == len(BAD),
                    what="all bad messages quarantined",
                )
            except AssertionError:
                with psycopg.connect(db_url) as conn:
                    got = conn.execute("SELECT reason FROM quarantine").fetchall()
                raise AssertionError(f"quarantined: {got}") from None
            await async_wait_until(lambda: count_rows(db_url) == 2 * len(BAD), what="good ones")
    finally:
        pub.client.publish(settings.readings_topic("ox-1"), b"", qos=1, retain=True)
        pub.close()
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT reason, detail, payload, topic, payload_bytes, payload_sha256 FROM quarantine"
            " ORDER BY quarantine_id"
        ).fetchall()
    assert [r[0] for r in rows] == [b[4] for b in BAD]
    for (label, device, payload, _retained, _reason), row in zip(BAD, rows, strict=True):
        _r, detail, stored, topic, size, sha = row
        # The raw bytes as received, up to HOMEWARD_QUARANTINE_KEEP_BYTES; size and hash whole.
        assert bytes(stored) == payload[:4096], label
        assert (size, bytes(sha)) == (len(payload), hashlib.sha256(payload).digest()), label
        assert len(detail) > 10, label
        assert topic == settings.readings_topic(device)

    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "250")
    listed = CliRunner().invoke(cli, ["quarantine", "list", "--json", "--reason", "unknown_unit"])
    assert listed.exit_code == 0, listed.output
    assert {r["msg_id"] for r in orjson.loads(listed.stdout)} == {"u2", "u3"}
    table = CliRunner().invoke(cli, ["quarantine", "list"])
    assert "impossible_value" in table.stdout


async def test_a_redelivered_bad_message_is_kept_once_and_counted(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    pub = Publisher(broker_url)
    try:
        async with running_service(settings) as service:
            for _ in range(3):
                pub.publish(settings.readings_topic("ox-1"), b"not json")
            await async_wait_until(lambda: service.pipeline.stats.quarantined == 3, what="3")
    finally:
        pub.close()
    assert count_rows(db_url, "SELECT count(*) FROM quarantine") == 1
    assert count_rows(db_url, "SELECT times_seen FROM quarantine") == 3
