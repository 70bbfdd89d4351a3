"""Helpers shared by integration and end-to-end tests (real PostgreSQL, real broker)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg

from homeward.config import MqttEndpoint, Settings
from homeward.mqtt import make_client
from service.wiring import HomewardService
from tools.bench.workload import drop_session


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_settings(db_url: str, broker_url: str, **overrides: Any) -> Settings:
    tag = unique()
    values: dict[str, Any] = {
        "database_url": db_url,
        "mqtt_url": broker_url,
        "topic_root": f"{tag}/homeward/v1",
        "mqtt_client_id": f"homeward-test-{tag}",
        "mqtt_share_group": tag,
        "http_port": 0,
        "flush_interval_ms": 20,
        "mqtt_keepalive_s": 5,
        "adherence_interval_s": 0,  # tests drive the adherence check with their own clock
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def reading_payload(
    msg_id: str,
    readings: Iterable[tuple[str, float, str]],
    *,
    measured_at: datetime | None = None,
    **extra: Any,
) -> bytes:
    doc: dict[str, Any] = {
        "msg_id": msg_id,
        "measured_at": (measured_at or datetime.now(UTC)).isoformat(),
        "readings": [{"metric": m, "value": v, "unit": u} for m, v, u in readings],
        **extra,
    }
    return orjson.dumps(doc)


class Publisher:
    """A plain paho QoS 1 publisher that waits for every PUBACK (bounded in flight)."""

    def __init__(self, broker_url: str, client_id: str | None = None) -> None:
        endpoint = MqttEndpoint.from_url(broker_url)
        self.client = make_client(endpoint, client_id or unique("pub-"))
        self.client.max_inflight_messages_set(200)
        self.client.connect(endpoint.host, endpoint.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=10)

    def publish_many(self, items: Iterable[tuple[str, bytes]], window: int = 500) -> int:
        pending: list[mqtt.MQTTMessageInfo] = []
        count = 0
        for topic, payload in items:
            pending.append(self.client.publish(topic, payload, qos=1))
            count += 1
            if len(pending) >= window:
                for info in pending:
                    info.wait_for_publish(timeout=30)
                pending.clear()
        for info in pending:
            info.wait_for_publish(timeout=30)
        return count

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def purge_session(settings: Settings) -> None:
    """Remove a test's persistent session from a shared broker (clean start, expiry 0)."""
    drop_session(settings, settings.mqtt_client_id)


def count_rows(db_url: str, sql: str = "SELECT count(*) FROM readings", *args: Any) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(sql, args or None).fetchone()
        assert row is not None
        return int(row[0])


def wait_until(
    predicate: Callable[[], bool], *, timeout_s: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


async def async_wait_until(
    predicate: Callable[[], bool], *, timeout_s: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[HomewardService]:
    """The real service in this event loop; stopped (and flushed) on exit."""
    service = HomewardService(settings)
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(service.run(stop, ready=ready))
    await asyncio.wait({task, asyncio.create_task(ready.wait())}, return_when="FIRST_COMPLETED")
    if task.done():
        task.result()
    await async_wait_until(lambda: service.source.stats.connected, what="MQTT connection")
    try:
        yield service
    finally:
        stop.set()
        await task


EXAMPLE_ORG = Path(__file__).parents[1] / "deploy" / "teams.example.yaml"


def load_example_org(conn: psycopg.Connection[Any]) -> None:
    """The example organisation (teams deal, dover, …): patients are enrolled into its teams."""
    from alerts.escalation_store import load_organisation
    from alerts.teams import load_org_file

    text = EXAMPLE_ORG.read_text(encoding="utf-8")
    load_organisation(conn, load_org_file(text), text)


def ensure_team(conn: psycopg.Connection[Any], team: str = "deal") -> None:
    """A bare team to enrol patients into, on a database not cloned from the test
    template (which has deal and dover already)."""
    conn.execute(
        "INSERT INTO teams (team_id, name, locality, calendar)"
        " VALUES (%s, %s, 'Test', '{}') ON CONFLICT DO NOTHING",
        (team, f"{team} (test)"),
    )


def service_process(
    settings: Settings, log: Path, *, client_id: str | None = None, **env_extra: str
) -> subprocess.Popen[bytes]:
    """``homeward run`` as its own process (so a test can SIGTERM or SIGKILL it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEWARD_")}
    env.update(
        HOMEWARD_DATABASE_URL=settings.dsn,
        HOMEWARD_MQTT_URL=settings.mqtt_url or "",
        HOMEWARD_TOPIC_ROOT=settings.topic_root,
        HOMEWARD_MQTT_CLIENT_ID=client_id or settings.mqtt_client_id,
        HOMEWARD_MQTT_SHARE_GROUP=settings.mqtt_share_group,
        HOMEWARD_HTTP_PORT="0",
        HOMEWARD_BATCH_SIZE="200",
        HOMEWARD_ADHERENCE_INTERVAL_S="0",
        **env_extra,
    )
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "commands.main", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
