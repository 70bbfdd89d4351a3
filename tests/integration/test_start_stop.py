"""`homeward run` as a process: it starts or fails within seconds with one line, stops
within its grace period in every state, and refuses a second instance of itself.

Each test runs the real command in a subprocess against real PostgreSQL and Mosquitto;
those that stop a database or a broker use their own (own_postgres, own_broker).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from alerts import escalation_store
from alerts.teams import load_org_file
from devices.registry import add_device, add_patient
from homeward.config import Settings
from homeward.db.connect import with_database
from homeward.db.migrate import release_migrations, upgrade
from support import Publisher, count_rows, make_settings, reading_payload, wait_until
from tools.embedded.mosquitto import EmbeddedMosquitto, free_port
from tools.embedded.postgres import EmbeddedPostgres

pytestmark = pytest.mark.slow

EXAMPLE = (Path(__file__).parents[2] / "deploy" / "teams.example.yaml").read_text()
NHS = "9434765919"
DEVICES = [f"bp-{i}" for i in range(5)]
GRACE_S = 5.0
MIGRATIONS = release_migrations()


def seed(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        escalation_store.load_organisation(conn, load_org_file(EXAMPLE), EXAMPLE)
        add_patient(conn, nhs_number=NHS, name="Start Stop", team="deal")
        for device in DEVICES:
            add_device(conn, device, patient_nhs_number=NHS)
        conn.commit()


def messages(settings: Settings, first: int, count: int) -> Iterator[tuple[str, bytes]]:
    for i in range(first, first + count):
        yield (
            settings.readings_topic(DEVICES[i % len(DEVICES)]),
            reading_payload(f"m-{i}", [("systolic_bp", 120 + i % 30, "mm[Hg]")]),
        )


def exactly_once(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT msg_id) FROM readings").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def service_env(settings: Settings, **extra: Any) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HOMEWARD_") and k != "NOTIFY_SOCKET"  # not the runner's systemd
    }
    env.update(
        HOMEWARD_DATABASE_URL=settings.dsn,
        HOMEWARD_MQTT_URL=settings.mqtt_url or "",
        HOMEWARD_TOPIC_ROOT=settings.topic_root,
        HOMEWARD_MQTT_CLIENT_ID=settings.mqtt_client_id,
        HOMEWARD_MQTT_SHARE_GROUP=settings.mqtt_share_group,
        HOMEWARD_MQTT_KEEPALIVE_S="5",
        HOMEWARD_ADHERENCE_INTERVAL_S="0",
        HOMEWARD_BATCH_SIZE="100",
        HOMEWARD_STOP_GRACE_S=str(GRACE_S),
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Service:
    """One `homeward run` process, its log, and its HTTP port."""

    def __init__(self, settings: Settings, log: Path, **extra: Any) -> None:
        self.port = int(extra.pop("HOMEWARD_HTTP_PORT", 0)) or free_port()
        env = service_env(settings, HOMEWARD_HTTP_PORT=self.port, **extra)
        self.log = log
        self.offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "commands.main", "run"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_bytes()[self.offset :].decode(errors="replace")

    def wait_ready(self) -> None:
        wait_until(
            lambda: "ready in" in self.text() or self.proc.poll() is not None,
            timeout_s=60,
            what="service ready",
        )
        assert self.proc.poll() is None, self.text()

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body: dict[str, Any] = orjson.loads(r.read())
        except urllib.error.HTTPError as exc:  # 503 still carries the body
            body = orjson.loads(exc.read())
        return body

    def signal_and_wait(self, sig: int = signal.SIGTERM, *, wait_s: float = 30) -> float:
        """Signal, wait for the exit, and return how long it took."""
        began = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(wait_s)
        return time.monotonic() - began

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_to_exit(env: dict[str, str], timeout_s: float = 30) -> tuple[int, str, float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "commands.main", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return done.returncode, done.stderr, time.monotonic() - began


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


# ---- start or fail ------------------------------------------------------------------------


def test_a_taken_http_port_ends_start_up_within_seconds(db_url: str, broker_url: str) -> None:
    settings = make_settings(db_url, broker_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr, took = run_to_exit(service_env(settings, HOMEWARD_HTTP_PORT=port))
    assert code == 3, stderr
    assert took < 10
    assert last_line(stderr) == (
        f"error: HTTP port 127.0.0.1:{port} is already in use (another homeward run?):"
        " stop that process or set HOMEWARD_HTTP_PORT"
    )
    # It ended before it reached anything else: no identity taken, nothing subscribed.
    assert "advisory lock" not in stderr
    assert "MQTT connected" not in stderr


@pytest.fixture
def unmigrated_db(pg_url: str) -> Iterator[str]:
    name = f"homeward_bare_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield with_database(pg_url, name)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize(
    ("case", "status", "says"),
    [
        ("invalid setting", 2, "error: invalid setting HOMEWARD_BATCH_SIZE='0': Input should"),
        ("missing teams file", 2, "error: HOMEWARD_TEAMS_FILE {tmp}/absent.yaml cannot be read"),
        ("invalid teams file", 2, "error: HOMEWARD_TEAMS_FILE {tmp}/bad.yaml is not valid"),
        ("address not ours", 3, "error: HOMEWARD_HTTP_HOST 192.0.2.1 is not an address of"),
        ("not migrated", 3, f"error: the database lacks {len(MIGRATIONS)} of this release's"),
        ("database away", 3, "error: the database did not answer within HOMEWARD_STARTUP_"),
        ("unknown database", 3, "error: the database refused the connection: "),
    ],
)
def test_a_start_up_step_that_cannot_succeed_ends_the_process_with_one_line(
    case: str,
    status: int,
    says: str,
    db_url: str,
    broker_url: str,
    unmigrated_db: str,
    tmp_path: Path,
) -> None:
    settings = make_settings(db_url, broker_url)
    (tmp_path / "bad.yaml").write_text("localities: [{name: 1}]\n")
    cases: dict[str, dict[str, Any]] = {
        "invalid setting": {"HOMEWARD_BATCH_SIZE": "0"},
        "missing teams file": {"HOMEWARD_TEAMS_FILE": tmp_path / "absent.yaml"},
        "invalid teams file": {"HOMEWARD_TEAMS_FILE": tmp_path / "bad.yaml"},
        "address not ours": {"HOMEWARD_HTTP_HOST": "192.0.2.1"},
        "not migrated": {"HOMEWARD_DATABASE_URL": unmigrated_db},
        "database away": {
            "HOMEWARD_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
            "HOMEWARD_STARTUP_TIMEOUT_S": "2",
        },
        "unknown database": {"HOMEWARD_DATABASE_URL": with_database(db_url, "no_such_db")},
    }
    extra = cases[case]
    code, stderr, took = run_to_exit(service_env(settings, HOMEWARD_HTTP_PORT=0, **extra))
    assert code == status, stderr
    assert took < 10, stderr
    assert last_line(stderr).startswith(says.format(tmp=tmp_path)), stderr
    assert "Traceback" not in stderr
    assert "MQTT connected" not in stderr  # nothing was subscribed


def test_the_teams_file_is_loaded_at_start_up(db_url: str, broker_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, broker_url)
    teams = tmp_path / "teams.yaml"
    teams.write_text(EXAMPLE)
    service = Service(settings, tmp_path / "service.log", HOMEWARD_TEAMS_FILE=teams)
    try:
        service.wait_ready()
        assert count_rows(db_url, "SELECT count(*) FROM org_versions") == 1
        assert service.signal_and_wait() < GRACE_S
        assert service.proc.returncode == 0, service.text()
    finally:
        service.kill()
    again = Service(settings, tmp_path / "service.log", HOMEWARD_TEAMS_FILE=teams)
    try:
        again.wait_ready()
        assert "unchanged (already in force)" in again.text()
        assert again.signal_and_wait() < GRACE_S
    finally:
        again.kill()
    assert count_rows(db_url, "SELECT count(*) FROM org_versions") == 1


# ---- one instance per identity ------------------------------------------------------------


def test_a_second_instance_with_the_same_identity_is_refused_and_the_first_carries_on(
    db_url: str, broker_url: str, tmp_path: Path
) -> None:
    seed(db_url)
    settings = make_settings(db_url, broker_url)
    notify_path = tmp_path / "notify.sock"
    notified = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notified.bind(str(notify_path))
    notified.settimeout(30)
    first = Service(settings, tmp_path / "first.log", NOTIFY_SOCKET=notify_path)
    publisher = Publisher(broker_url)
    try:
        first.wait_ready()
        assert notified.recv(4096).startswith(b"READY=1")  # systemd's Type=notify
        same_id = service_env(settings, HOMEWARD_HTTP_PORT=free_port())
        code, stderr, took = run_to_exit(same_id)
        assert code == 3, stderr
        assert took < 15
        assert last_line(stderr).startswith(
            f"error: MQTT client id {settings.mqtt_client_id!r} is in use by homeward run"
            f" pid {first.proc.pid} on "
        ), stderr
        other_id = service_env(
            settings,
            HOMEWARD_HTTP_PORT=first.port,
            HOMEWARD_MQTT_CLIENT_ID="homeward-another-worker",
        )
        code, stderr, took = run_to_exit(other_id)
        assert code == 3, stderr
        assert last_line(stderr).startswith(f"error: HTTP port 127.0.0.1:{first.port} is already")
        # The first was never kicked off the broker, and still works.
        publisher.publish_many(messages(settings, 0, 10))
        wait_until(lambda: count_rows(db_url) == 10, what="readings stored by the first")
        health = first.health()
        assert health["status"] == "ok", health
        assert health["mqtt"]["connects"] == 1
        assert health["mqtt"]["taken_over"] == 0
        assert first.signal_and_wait() < GRACE_S
        assert notified.recv(4096) == b"STOPPING=1"
        assert first.proc.returncode == 0, first.text()
    finally:
        first.kill()
        publisher.close()
        notified.close()


# ---- bounded stop ---------------------------------------------------------------------------


def hold_readings(db_url: str) -> psycopg.Connection[tuple[object, ...]]:
    """A transaction holding the readings table: every batch now waits (a stalled ingest)."""
    conn = psycopg.connect(db_url)
    conn.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
    return conn


def drain(settings: Settings, log: Path, db_url: str, total: int) -> Service:
    """Restart and wait until every reading is stored; the caller stops it."""
    service = Service(settings, log)
    service.wait_ready()
    wait_until(lambda: count_rows(db_url) >= total, timeout_s=60, what="every reading")
    return service


def stop_in_time(service: Service) -> None:
    took = service.signal_and_wait()
    assert service.proc.returncode == 0, service.text()[-3000:]
    assert took < GRACE_S, f"took {took:.1f} s\n{service.text()[-3000:]}"


def test_sigterm_during_a_stalled_batch_exits_in_time_and_acknowledges_nothing_unstored(
    db_url: str, own_broker: EmbeddedMosquitto, tmp_path: Path
) -> None:
    seed(db_url)
    settings = make_settings(db_url, own_broker.url)
    log = tmp_path / "service.log"
    total = 300
    service = Service(settings, log)
    publisher = Publisher(own_broker.url)
    try:
        service.wait_ready()
        locker = hold_readings(db_url)
        publisher.publish_many(messages(settings, 0, total))
        wait_until(lambda: service.health()["mqtt"]["received"] >= total, what="all received")
        assert service.health()["mqtt"]["acked"] == 0
        stop_in_time(service)
        assert "messages unacknowledged (not stored in time)" in service.text()
        locker.rollback()
        locker.close()
        assert count_rows(db_url) == 0  # the stalled batch rolled back
        restarted = drain(settings, log, db_url, total)
        stop_in_time(restarted)
    finally:
        service.kill()
        publisher.close()
    assert exactly_once(db_url) == (total, total)


def test_sigterm_with_the_database_stopped_exits_in_time_and_loses_nothing(
    own_postgres: EmbeddedPostgres, own_broker: EmbeddedMosquitto, tmp_path: Path
) -> None:
    db_url = own_postgres.url
    upgrade(db_url)
    seed(db_url)
    settings = make_settings(db_url, own_broker.url)
    log = tmp_path / "service.log"
    service = Service(settings, log)
    publisher = Publisher(own_broker.url)
    try:
        service.wait_ready()
        publisher.publish_many(messages(settings, 0, 200))
        wait_until(lambda: count_rows(db_url) == 200, what="stored before the outage")
        own_postgres.stop("fast")
        publisher.publish_many(messages(settings, 200, 200))
        wait_until(lambda: service.health()["mqtt"]["received"] >= 400, what="held in memory")
        stop_in_time(service)
        own_postgres.start()
        restarted = drain(settings, log, db_url, 400)
        stop_in_time(restarted)
    finally:
        service.kill()
        publisher.close()
    assert exactly_once(db_url) == (400, 400)


def test_sigterm_with_the_broker_stopped_exits_in_time_and_loses_nothing(
    db_url: str, own_broker: EmbeddedMosquitto, tmp_path: Path
) -> None:
    seed(db_url)
    settings = make_settings(db_url, own_broker.url)
    log = tmp_path / "service.log"
    total = 200
    service = Service(settings, log)
    publisher = Publisher(own_broker.url)
    try:
        service.wait_ready()
        locker = hold_readings(db_url)
        publisher.publish_many(messages(settings, 0, total))
        publisher.close()
        wait_until(lambda: service.health()["mqtt"]["received"] >= total, what="all received")
        own_broker.stop()
        locker.rollback()  # now they are stored, but cannot be acknowledged
        locker.close()
        wait_until(lambda: count_rows(db_url) == total, what="stored with the broker away")
        health = service.health()
        assert health["mqtt"]["acked"] == 0
        assert health["problems"][0] == "broker: not connected"
        stop_in_time(service)
        own_broker.start()
        restarted = drain(settings, log, db_url, total)
        # The broker redelivers what was never acknowledged; the database absorbs it.
        wait_until(lambda: restarted.health()["ingest"]["duplicates"] >= total, what="redelivered")
        stop_in_time(restarted)
    finally:
        service.kill()
    assert exactly_once(db_url) == (total, total)


def test_a_second_signal_exits_at_once(
    db_url: str, own_broker: EmbeddedMosquitto, tmp_path: Path
) -> None:
    seed(db_url)
    settings = make_settings(db_url, own_broker.url)
    log = tmp_path / "service.log"
    service = Service(settings, log, HOMEWARD_STOP_GRACE_S=60)
    publisher = Publisher(own_broker.url)
    try:
        service.wait_ready()
        locker = hold_readings(db_url)
        publisher.publish_many(messages(settings, 0, 50))
        wait_until(lambda: service.health()["mqtt"]["received"] >= 50, what="all received")
        service.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "stopping within 60 s" in service.text(), what="stopping")
        took = service.signal_and_wait(signal.SIGINT)
        assert service.proc.returncode == 4
        assert took < 2
        assert "error: second SIGINT: exiting at once; 50 messages left unacknowledged" in (
            service.text()
        )
        locker.rollback()
        locker.close()
        restarted = drain(settings, log, db_url, 50)
        stop_in_time(restarted)
    finally:
        service.kill()
        publisher.close()
    assert exactly_once(db_url) == (50, 50)


def test_sigterm_while_a_notification_hangs_exits_in_time_and_leaves_it_undelivered(
    db_url: str, broker_url: str, tmp_path: Path
) -> None:
    """A webhook that takes the connection and never answers (the sender's own limit is
    10 s): the escalation run is interrupted, the notification stays undelivered for the
    next start to send."""
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen()
    url = f"http://127.0.0.1:{hanging.getsockname()[1]}/hook"
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(hanging.accept()[0]), daemon=True).start()
    hook = f"webhook_url: {url}\n      webhook_secret_env: DEAL_WEBHOOK_SECRET"
    org = EXAMPLE.replace(  # by day the team handles the alert, at night its cover does
        "webhook_url: null\n      webhook_secret_env: null", hook, 1
    ).replace(
        "channels:\n      emails:\n      - skc-rapid-response@",
        f"channels:\n      {hook}\n      emails:\n      - skc-rapid-response@",
    )
    assert org.count(url) == 2
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        escalation_store.load_organisation(conn, load_org_file(org), org)
        patient = add_patient(conn, nhs_number=NHS, name="Hanging Hook", team="deal")
        conn.execute(
            "INSERT INTO alerts (patient_id, rule_id, kind, priority, team_id, opened_at,"
            " first_measured_at, latest_measured_at, message)"
            " VALUES (%s, 'threshold:systolic_bp:severe', 'threshold', 'red', 'deal', %s, %s,"
            " %s, 'systolic 186')",
            (patient.patient_id, now, now, now),
        )
        conn.commit()
    settings = make_settings(db_url, broker_url)
    service = Service(
        settings,
        tmp_path / "service.log",
        HOMEWARD_ESCALATION_TICK_S="0.5",
        DEAL_WEBHOOK_SECRET="s3cret",
    )
    try:
        service.wait_ready()
        wait_until(lambda: bool(accepted), what="the webhook called")
        stop_in_time(service)
        assert "escalation run interrupted" in service.text()
    finally:
        service.kill()
        hanging.close()
        for conn_ in accepted:
            conn_.close()
    undelivered = count_rows(
        db_url,
        "SELECT count(*) FROM notifications WHERE channel = 'webhook' AND delivered_at IS NULL",
    )
    assert undelivered == 1
