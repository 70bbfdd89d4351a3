"""Bad input over a real broker: every message kept in quarantine with its reason, and
the good messages around them still stored (a poison message never blocks the stream)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import orjson
import psycopg
import pytest
from click.testing import CliRunner

from bad_payloads import BAD, OTHER
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
GOOD = [("spo2", 95, "%"), ("heart_rate", 80, "/min")]


@pytest.fixture
def settings(db_url: str, broker_url: str) -> Iterator[Settings]:
    s = make_settings(db_url, broker_url)
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Quarantine Test", team="deal")
        add_patient(conn, nhs_number=OTHER, name="Someone Else", team="deal")
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
