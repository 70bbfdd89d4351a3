"""Storage paths: plain PostgreSQL always; TimescaleDB when the extension is installed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devices.registry import add_device, add_patient
from homeward.db.migrate import pending, upgrade
from homeward.db.policies import apply_policies
from support import ensure_team
from tools.embedded.mosquitto import free_port
from tools.embedded.postgres import EmbeddedPostgres, timescaledb_installed

NHS = "9434765919"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def fill(db_url: str, hours: int = 48) -> None:
    with psycopg.connect(db_url) as conn:
        ensure_team(conn)  # also on an embedded database that is not the test template
        patient = add_patient(conn, nhs_number=NHS, name="Storage", team="deal")
        add_device(conn, "wr-1", patient_nhs_number=NHS)
        with conn.cursor().copy(
            "COPY readings (time, patient_id, device_id, metric, value, received_at, msg_id)"
            " FROM STDIN"
        ) as copy:
            for minute in range(hours * 60):
                at = T0 + timedelta(minutes=minute)
                copy.write_row(
                    (
                        at,
                        patient.patient_id,
                        "wr-1",
                        "heart_rate",
                        60 + minute % 30,
                        at,
                        f"m{minute}",
                    )
                )
        conn.commit()


def rollup(db_url: str, view: str) -> list[tuple[object, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            f"SELECT bucket, metric, n, round(mean::numeric, 3), min, max FROM {view}"
            " ORDER BY bucket"
        ).fetchall()


def test_migrations_produce_the_schema_the_code_expects(db_url: str) -> None:
    assert pending(db_url) == ()
    with psycopg.connect(db_url) as conn:
        columns = {
            table: [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = %s ORDER BY ordinal_position",
                    (table,),
                )
            ]
            for table in (
                "readings",
                "quarantine",
                "patients",
                "devices",
                "device_bindings",
                "readings_hourly",
                "readings_daily",
                "api_tokens",
                "audit_log",
            )
        }
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes")}
    assert columns["readings"] == [
        "time",
        "patient_id",
        "device_id",
        "metric",
        "value",
        "received_at",
        "msg_id",
        "flags",
        "on_oxygen",
        "consciousness",
        "late",
        "device_seq",
    ]
    assert columns["readings_hourly"] == [
        "bucket",
        "patient_id",
        "metric",
        "n",
        "mean",
        "min",
        "max",
    ]
    assert "readings_once" in indexes
    assert "quarantine_once" in indexes
    assert "alerts_team_queue" in indexes  # the API's queue order
    assert "token_sha256" in columns["api_tokens"]
    assert "token" not in columns["api_tokens"]  # only the hash is ever stored
    assert columns["audit_log"][:4] == ["audit_id", "at", "actor", "role"]
    assert {"patient_id", "allowed", "status", "detail"} <= set(columns["audit_log"])


def test_plain_postgresql_rollups(db_url: str) -> None:
    fill(db_url, hours=3)
    hourly = rollup(db_url, "readings_hourly")
    assert len(hourly) == 3
    assert hourly[0][2] == 60  # 60 readings in the first hour
    daily = rollup(db_url, "readings_daily")
    assert [row[2] for row in daily] == [180]


@pytest.fixture
def timescale_db(tmp_path: Path) -> Iterator[str]:
    if not timescaledb_installed():
        pytest.skip("TimescaleDB extension is not installed for this PostgreSQL")
    server = EmbeddedPostgres(tmp_path / "tsdb", free_port())
    server.start()
    try:
        upgrade(server.url)
        yield server.url
    finally:
        server.stop("immediate")


@pytest.mark.timescaledb
def test_hypertable_compression_and_continuous_aggregates(timescale_db: str) -> None:
    policies = apply_policies(timescale_db, compress_after_days=7, retention_days=365)
    assert policies.timescaledb
    fill(timescale_db, hours=48)
    with psycopg.connect(timescale_db, autocommit=True) as conn:
        hypertables = conn.execute(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
        ).fetchall()
        assert hypertables == [("readings", True)]
        # 7-day chunks and one bloom filter, on device_id (migration 0008).
        interval = conn.execute(
            "SELECT time_interval FROM timescaledb_information.dimensions"
            " WHERE hypertable_name = 'readings'"
        ).fetchone()
        assert interval == (timedelta(days=7),)
        sparse = conn.execute(
            "SELECT index FROM timescaledb_information.hypertable_compression_settings"
            " WHERE hypertable = 'readings'::regclass"
        ).fetchone()
        assert sparse is not None
        blooms = [i["column"] for i in sparse[0] if i["type"] == "bloom"]
        assert blooms == ["device_id"]
        caggs = {
            r[0]
            for r in conn.execute(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates"
            )
        }
        # behind the readings_hourly/readings_daily views (migration 0011)
        assert caggs == {"readings_hourly_ca", "readings_daily_ca"}
        jobs = {r[0] for r in conn.execute("SELECT proc_name FROM timescaledb_information.jobs")}
        assert {
            "policy_compression",
            "policy_retention",
            "policy_refresh_continuous_aggregate",
        } <= jobs
        before = conn.execute("SELECT hypertable_size('readings')").fetchone()
        conn.execute("SELECT compress_chunk(c) FROM show_chunks('readings') c")
        stats = conn.execute(
            "SELECT sum(before_compression_total_bytes), sum(after_compression_total_bytes)"
            " FROM chunk_compression_stats('readings')"
        ).fetchone()
        assert before is not None
        assert stats is not None
        assert stats[1] < stats[0]
        # A redelivered reading landing in a compressed chunk is still absorbed.
        conn.execute(
            "INSERT INTO readings (time, patient_id, device_id, metric, value, received_at, msg_id)"
            " SELECT time, patient_id, device_id, metric, value, received_at, msg_id"
            " FROM readings WHERE msg_id = 'm10' ON CONFLICT DO NOTHING"
        )
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (48 * 60,)
    hourly = rollup(timescale_db, "readings_hourly")  # exact before any refresh
    assert len(hourly) == 48
    assert hourly[0][2] == 60
