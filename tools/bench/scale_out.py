"""Scale-out check: one and then two ingest workers (separate processes, each its own
client id in one share group) drain the same pre-filled queue; correctness is checked by
counting rows and open alerts and comparing which alerts each drain raised (two workers
must raise those of one: the rule state is shared, docs/architecture.md), throughput is
compared."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import psycopg

from homeward.config import Settings
from tools.bench.workload import (
    READINGS_PER_MESSAGE,
    create_session,
    drop_session,
    publish_all,
)


def _worker(settings: Settings, client_id: str, group: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEWARD_")}
    env.update(
        HOMEWARD_DATABASE_URL=settings.dsn,
        HOMEWARD_MQTT_URL=settings.mqtt_url or "",
        HOMEWARD_TOPIC_ROOT=settings.topic_root,
        HOMEWARD_MQTT_CLIENT_ID=client_id,
        HOMEWARD_MQTT_SHARE_GROUP=group,
        HOMEWARD_HTTP_PORT="0",
        HOMEWARD_ADHERENCE_INTERVAL_S="0",
        HOMEWARD_LOG_LEVEL="WARNING",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "commands.main", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _counts(dsn: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM readings),"
            " (SELECT count(DISTINCT (device_id, msg_id, metric)) FROM readings),"
            " (SELECT count(*) FROM (SELECT 1 FROM alerts WHERE state <> 'resolved'"
            "  GROUP BY patient_id, rule_id HAVING count(*) > 1) twice)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def drain_with_workers(
    settings: Settings,
    dsn: str,
    messages: list[tuple[str, bytes]],
    workers: int,
    timeout_s: float = 900,
) -> dict[str, Any]:
    tag = f"scale{workers}-{time.monotonic_ns()}"
    ids = [f"homeward-hw-{tag}-{i}" for i in range(workers)]
    for client_id in ids:
        create_session(settings, client_id, f"$share/{tag}/{settings.readings_topic()}")
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE readings")
        conn.execute(
            "TRUNCATE alerts, alert_events, escalation_steps, notifications, notification_attempts"
        )
        conn.commit()
    publish_all(settings, messages)
    expected = len(messages) * READINGS_PER_MESSAGE
    began = time.perf_counter()
    procs = [_worker(settings, client_id, tag) for client_id in ids]
    try:
        deadline = began + timeout_s
        while _counts(dsn)[1] < expected and time.perf_counter() < deadline:
            time.sleep(0.2)
        elapsed = time.perf_counter() - began
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
        for client_id in ids:
            drop_session(settings, client_id)
    stored, distinct, doubled_alerts = _counts(dsn)
    return {
        "workers": workers,
        "readings_per_s": distinct / elapsed,
        "lost": expected - distinct,
        "duplicated": stored - distinct,
        "duplicate_open_alerts": doubled_alerts,
        "alerts": _alerts(dsn),
    }


def _alerts(dsn: str) -> list[tuple[int, str]]:
    """Which patient has an alert of which rule: the same whichever worker decided."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT DISTINCT patient_id, rule_id FROM alerts ORDER BY patient_id, rule_id"
        ).fetchall()
    return [(int(pid), str(rule)) for pid, rule in rows]


def compare_alerts(one: dict[str, Any], two: dict[str, Any]) -> dict[str, int]:
    """Alerts of one worker's drain missing from two workers' drain, and the reverse."""
    a, b = set(map(tuple, one["alerts"])), set(map(tuple, two["alerts"]))
    return {"alerts": len(a), "missing_alerts": len(a - b), "extra_alerts": len(b - a)}
