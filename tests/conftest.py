"""Real services for the tests.

When ``HOMEWARD_DATABASE_URL`` / ``HOMEWARD_MQTT_URL`` are set, the tests use those
servers (each test gets its own database cloned from a migrated template, and its own
topic root and client id on the broker). When they are not set, a private PostgreSQL
and Mosquitto are started for the session. Every other ``HOMEWARD_`` variable is
cleared so that tests build their settings explicitly.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import sql

from homeward.db.connect import with_database
from homeward.db.migrate import upgrade
from tools.embedded.mosquitto import EmbeddedMosquitto, free_port
from tools.embedded.postgres import EmbeddedPostgres

# Property tests are reproducible: the default profile draws the same examples on every
# run (derandomised) and keeps no example database, so a result never depends on the run.
# `make test-explore` (HYPOTHESIS_PROFILE=explore) draws fresh examples, outside CI's verdict.
# Nothing in a verdict depends on the machine's speed either: no deadline, and no health
# check that times the test (a loaded CI machine is slow, not wrong).
for _name, _random in (("reproducible", False), ("explore", True)):
    settings.register_profile(
        _name,
        derandomize=not _random,
        database=None,
        print_blob=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))

CONFIGURED_DB = os.environ.get("HOMEWARD_DATABASE_URL")
CONFIGURED_MQTT = os.environ.get("HOMEWARD_MQTT_URL")
for _name in [n for n in os.environ if n.startswith("HOMEWARD_")]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server URL we may create databases on."""
    if CONFIGURED_DB:
        yield CONFIGURED_DB
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", free_port())
    server.start()
    yield server.admin_url
    server.stop("immediate")


def _admin(pg_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg_url, autocommit=True)


def _drop(pg_url: str, name: str) -> None:
    with _admin(pg_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def template_db(pg_url: str) -> Iterator[str]:
    """A migrated database that each test clones (CREATE DATABASE … TEMPLATE)."""
    name = f"homeward_tmpl_{uuid.uuid4().hex[:8]}"
    with _admin(pg_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    upgrade(with_database(pg_url, name))
    with psycopg.connect(with_database(pg_url, name)) as conn:
        # Patients are enrolled into a team that exists (devices/registry.py refuses an
        # orphan): the example organisation's deal and dover as bare teams — no
        # organisation version, so escalation has nothing to do until a test loads one.
        conn.execute(
            "INSERT INTO teams (team_id, name, locality, calendar) VALUES"
            " ('deal', 'Deal (test)', 'Test', '{}'), ('dover', 'Dover (test)', 'Test', '{}')"
        )
    with _admin(pg_url) as conn:
        # Nothing may connect to a template while it is cloned — TimescaleDB's background
        # scheduler would; so the template refuses connections from now on.
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
    yield name
    _drop(pg_url, name)


@pytest.fixture
def db_url(pg_url: str, template_db: str) -> Iterator[str]:
    name = f"homeward_t_{uuid.uuid4().hex[:10]}"
    create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template_db)
    )
    with _admin(pg_url) as conn:
        for attempt in range(50):  # a just-terminated session may linger for a moment
            try:
                conn.execute(create)
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 49:
                    raise
                time.sleep(0.1)
    yield with_database(pg_url, name)
    _drop(pg_url, name)


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if CONFIGURED_MQTT:
        yield CONFIGURED_MQTT
        return
    broker = EmbeddedMosquitto(tmp_path_factory.mktemp("mqtt"), free_port())
    broker.start()
    yield broker.url
    broker.stop()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A throwaway PostgreSQL this test may stop, kill and restart."""
    server = EmbeddedPostgres(tmp_path / "pg", free_port())
    server.start()
    yield server
    server.stop("immediate")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedMosquitto]:
    """A throwaway Mosquitto this test may stop and restart."""
    broker = EmbeddedMosquitto(tmp_path / "mqtt", free_port())
    broker.start()
    yield broker
    broker.stop()
