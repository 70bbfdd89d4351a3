"""Saved settings take effect in the running service (issue 14, item 3): a change made with
``homeward rules set`` changes what the service decides from the next reading (MQTT in,
PostgreSQL, the CLI out) or the next adherence pass — or the CLI refuses it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from click.testing import CliRunner

from alerts.adherence import check
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


@pytest.fixture
def settings(db_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Home", team="deal", conditions=["post_discharge"])
        add_device(conn, "ox-1", patient_nhs_number=NHS, kind="pulse_oximeter")
        conn.commit()
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    s = make_settings(db_url, broker_url)
    yield s
    purge_session(s)


def rules_set(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["rules", "set", NHS, *args, "--by", "dr.jones", "--reason", "care plan review"]
    )
    return result.exit_code, result.stderr


def news2_alerts(db_url: str) -> list[tuple[str, float]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT priority, latest_value FROM alerts WHERE rule_id = 'news2'"
        ).fetchall()
    return [(str(p), float(v)) for p, v in rows]


def vitals(msg_id: str, at: datetime) -> bytes:
    """Pulse 115 (2), systolic 105 (1), temperature 38.5 (1): NEWS2 4 — below the RCP 5."""
    return reading_payload(
        msg_id,
        [
            ("heart_rate", 115, "/min"),
            ("systolic_bp", 105, "mm[Hg]"),
            ("body_temperature", 38.5, "Cel"),
        ],
        measured_at=at,
    )


async def test_news2_amber_at_set_on_the_cli_is_used_from_the_next_reading(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    pub = Publisher(broker_url)
    topic = settings.readings_topic("ox-1")
    now = datetime.now(UTC)
    try:
        async with running_service(settings) as service:
            pub.publish(topic, vitals("v1", now - timedelta(minutes=30)))
            await async_wait_until(lambda: service.pipeline.stats.stored == 3, what="stored")
            assert news2_alerts(db_url) == []  # 4 is below the default amber_at 5
            assert rules_set("news2", "amber_at=4") == (0, "")
            pub.publish(topic, vitals("v2", now))
            await async_wait_until(lambda: news2_alerts(db_url) != [], what="NEWS2 alert")
    finally:
        pub.close()
    assert news2_alerts(db_url) == [("amber", 4.0)]


def test_settings_without_effect_are_refused_by_the_cli(settings: Settings, db_url: str) -> None:
    code, stderr = rules_set("news2", "amber_at=8")
    assert code == 2
    assert "must be below red_at" in stderr
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE patients SET conditions = '{heart_failure}'")
        conn.commit()
    code, stderr = rules_set("baseline:body_weight:cusum", "lam=0.2")
    assert code == 2
    assert "ewma setting" in stderr
    assert count_rows(db_url, "SELECT count(*) FROM patient_rules") == 0


async def test_device_silence_set_on_the_cli_is_used_by_the_next_pass(
    settings: Settings, db_url: str
) -> None:
    at = datetime(2026, 12, 2, 12, tzinfo=UTC)
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE devices SET last_msg_at = %s, status = 'online'", (at,))
        conn.commit()

    def silent() -> int:
        return count_rows(
            db_url, "SELECT count(*) FROM alerts WHERE rule_id LIKE 'device_silent:%'"
        )

    async with await psycopg.AsyncConnection.connect(db_url) as aconn:
        await check(aconn, at + timedelta(hours=30))  # under 2 × 24 h: not silent
        assert silent() == 0
        assert rules_set("device_silence", "spot_cadence_h=12") == (0, "")
        await check(aconn, at + timedelta(hours=30))  # over 2 × 12 h
        assert silent() == 1
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE alerts SET state = 'resolved', resolved_at = now()")
        conn.execute("UPDATE devices SET status = 'offline'")
        conn.commit()
    assert rules_set("device_silence", "enabled=false") == (0, "")
    async with await psycopg.AsyncConnection.connect(db_url) as aconn:
        await check(aconn, at + timedelta(days=3))
    assert count_rows(db_url, "SELECT count(*) FROM alerts WHERE state <> 'resolved'") == 0
