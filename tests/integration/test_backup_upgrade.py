"""Back up, restore and upgrade, as docs/operations.md tells an operator to.

* A dump of a running system (``pg_dump``) restored into a new database (``pg_restore``)
  is one the service resumes on: readings the devices send again are absorbed, the alert
  they raised is not raised twice, and what is new is stored once.
* A database holding data in the schema of the previous release (the migrations that
  release shipped) is upgraded to today's by ``homeward db upgrade``, and the service's
  own paths (ingest, rules, the API) work on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import psycopg
import pytest
from psycopg import sql
from yoyo import get_backend, read_migrations

from alerts import escalation_store
from alerts.teams import load_org_file
from api.tokens import issue_token
from devices.registry import add_device, add_patient
from homeward.db.connect import with_database
from homeward.db.migrate import MIGRATIONS_DIR
from support import (
    Publisher,
    async_wait_until,
    count_rows,
    make_settings,
    purge_session,
    reading_payload,
    running_service,
)

EXAMPLE = (Path(__file__).parents[2] / "deploy" / "teams.example.yaml").read_text()
NHS = "9434765919"
# The schema the previous release (commit cc30203) shipped: its migrations, by id.
PREVIOUS_RELEASE = (
    "0001_registry",
    "0002_readings",
    "0003_timescaledb",
    "0004_alerts",
    "0005_binding_lookup",
    "0006_teams_escalation",
    "0007_patient_practice",
    "0008_compact_compression",
    "0009_api_access",
)
pytestmark = pytest.mark.skipif(
    shutil.which("pg_dump") is None or shutil.which("pg_restore") is None,
    reason="pg_dump and pg_restore (PostgreSQL's client programs) are not installed",
)


def _admin(db_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(with_database(db_url, "postgres"), autocommit=True)


def _new_database(db_url: str) -> str:
    name = f"homeward_r_{uuid.uuid4().hex[:10]}"
    with _admin(db_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(db_url, name)


def _drop(db_url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    with _admin(db_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )


def _enrol(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        escalation_store.load_organisation(conn, load_org_file(EXAMPLE), EXAMPLE)
        add_patient(conn, nhs_number=NHS, name="Dee Deal", team="deal", conditions=["hypertension"])
        add_device(conn, "bp-1", patient_nhs_number=NHS)
        conn.commit()


def _bp(msg_id: str, systolic: int, at: datetime) -> bytes:
    return reading_payload(
        msg_id,
        [("systolic_bp", systolic, "mm[Hg]"), ("diastolic_bp", 90, "mm[Hg]")],
        measured_at=at,
    )


async def test_a_restored_dump_resumes_with_nothing_duplicated(
    db_url: str, broker_url: str, tmp_path: Path
) -> None:
    _enrol(db_url)
    now = datetime.now(UTC)
    before = [(f"m{i}", 186 if i == 2 else 128, now - timedelta(minutes=10 - i)) for i in range(4)]
    after = [(f"m{i}", 130, now - timedelta(minutes=5 - i)) for i in range(4, 6)]
    settings = make_settings(db_url, broker_url)
    pub = Publisher(broker_url)
    try:
        async with running_service(settings):
            for msg, systolic, at in before:
                pub.publish(settings.readings_topic("bp-1"), _bp(msg, systolic, at))
            await async_wait_until(
                lambda: (
                    count_rows(db_url, "SELECT count(*) FROM alerts") >= 1
                    and count_rows(db_url) == 8
                ),
                what="the readings and their alert",
            )
            alerts = count_rows(db_url, "SELECT count(*) FROM alerts")
        dump = tmp_path / "homeward.dump"
        subprocess.run(
            ["pg_dump", "--format=custom", f"--file={dump}", "--no-owner", db_url], check=True
        )
    finally:
        purge_session(settings)
    restored = _new_database(db_url)
    try:
        subprocess.run(
            ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={restored}", str(dump)],
            check=True,
        )
        # The service resumes on the restored copy; the devices send again what they had
        # not seen acknowledged, and more.
        settings = make_settings(restored, broker_url)
        try:
            async with running_service(settings):
                for msg, systolic, at in before + after:
                    pub.publish(settings.readings_topic("bp-1"), _bp(msg, systolic, at))
                # published in order, so the resent ones were decided before the new ones
                await async_wait_until(lambda: count_rows(restored) == 12, what="new readings")
            assert count_rows(restored) == 12  # 8 restored + 4 new, none twice
            # the alerts the dump held, none raised again by the resent readings
            assert count_rows(restored, "SELECT count(*) FROM alerts") == alerts
            assert (
                count_rows(restored, "SELECT count(*) FROM alert_events WHERE kind = 'raised'")
                == alerts
            )
        finally:
            purge_session(settings)
    finally:
        pub.close()
        _drop(restored)


def _migrate(dsn: str, ids: tuple[str, ...] | None) -> None:
    """Apply the migrations ``ids`` (all when None), as that release's upgrade did."""
    backend = get_backend("postgresql+psycopg://" + dsn.removeprefix("postgresql://"))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    if ids is not None:
        migrations = migrations.filter(lambda m: m.id in ids)
        assert sorted(m.id for m in migrations) == sorted(ids)
    with backend.lock():
        backend.apply_migrations(backend.to_apply(migrations))
    backend.connection.close()


async def test_the_previous_release_schema_with_data_upgrades_to_today(
    db_url: str, broker_url: str
) -> None:
    old = _new_database(db_url)
    try:
        _migrate(old, PREVIOUS_RELEASE)
        now = datetime.now(UTC)
        _enrol(old)
        with psycopg.connect(old) as conn:  # data as the previous release wrote it
            pid = conn.execute("SELECT patient_id FROM patients").fetchone()
            assert pid is not None
            for i in range(3):
                at = now - timedelta(days=2, hours=i)
                for metric, value in (("systolic_bp", 140 + i), ("diastolic_bp", 85)):
                    conn.execute(
                        "INSERT INTO readings (time, patient_id, device_id, metric, value,"
                        " received_at, msg_id) VALUES (%s, %s, 'bp-1', %s, %s, %s, %s)",
                        (at, pid[0], metric, value, at, f"old-{i}"),
                    )
            _, token = issue_token(conn, now=now, staff_id="deal.mn1")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEWARD_")}
        upgraded = subprocess.run(
            [sys.executable, "-m", "commands.main", "db", "upgrade"],
            env={**env, "HOMEWARD_DATABASE_URL": old},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert upgraded.returncode == 0, upgraded.stderr
        _migrate(old, None)  # nothing left to apply: the upgrade took the schema to today
        settings = make_settings(old, broker_url)
        pub = Publisher(broker_url)
        try:
            async with running_service(settings) as service, aiohttp.ClientSession() as http:
                pub.publish(settings.readings_topic("bp-1"), _bp("new-1", 186, now))
                severe = (
                    "SELECT count(*) FROM alerts WHERE rule_id = 'threshold:systolic_bp:severe'"
                )
                await async_wait_until(
                    lambda: count_rows(old, severe) == 1,
                    what="an alert from a reading after the upgrade",
                )
                headers = {"Authorization": f"Bearer {token}"}
                base = f"http://127.0.0.1:{service.http_port}"
                async with http.get(f"{base}/api/v1/patients/{NHS}/readings", headers=headers) as r:
                    assert r.status == 200
                    readings = (await r.json())["readings"]
                async with http.get(
                    f"{base}/fhir/Observation", headers=headers, params={"patient": NHS}
                ) as r:
                    assert r.status == 200
                    observations = (await r.json())["entry"]
        finally:
            pub.close()
            purge_session(settings)
        assert len(readings) == 8  # three old blood pressures and the new one, two values each
        assert len(observations) == 4  # one panel each
    finally:
        _drop(old)
