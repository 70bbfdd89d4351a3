"""Scale-out check: one and then two ingest workers (separate processes, each its own
client id in one share group) drain the same pre-filled queue; correctness is checked by
counting rows and open alerts and comparing which alerts each drain raised (two workers
must raise those of one: the rule state is shared, docs/architecture.md), throughput is
compared.

Scale-down check: two workers under a steady load, one of them stopped mid-run (SIGTERM,
then SIGKILL in a second run); every reading must be stored, and the delay each
reading saw (received − measured, the publisher stamps the moment of publishing) is
measured — for SIGKILL it is bounded by the peer timeout (docs/operations.md)."""

from __future__ import annotations

import os
import signal
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

# The scale-down runs' membership timing (the defaults are 5 s and 30 s; these make the
# SIGKILL run short, and the reported delay is measured against this bound).
HEARTBEAT_S = 1.0
PEER_TIMEOUT_S = 5.0


def _worker(
    settings: Settings, client_id: str, group: str, **extra: str
) -> subprocess.Popen[bytes]:
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
        **extra,
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
            "TRUNCATE alerts, alert_events, escalation_steps, notifications,"
            " notification_attempts, notify_requests"
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


def _members_active(dsn: str, ids: list[str]) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM ingest_members WHERE client_id = ANY(%s) AND state = 'active'",
            (ids,),
        ).fetchone()
    return bool(row and row[0] == len(ids))


def _delays(dsn: str) -> tuple[int, float, float, int]:
    """Distinct readings, p99 and max of received − measured (s), readings over 1 s late."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT (device_id, msg_id, metric)),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY d), max(d),"
            " count(*) FILTER (WHERE d > 1)"
            " FROM (SELECT *, extract(epoch FROM received_at - time) AS d FROM readings) r"
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1] or 0), float(row[2] or 0), int(row[3])


def stop_one_of_two(
    settings: Settings,
    dsn: str,
    *,
    how: signal.Signals,
    rate: float,
    duration_s: float,
    devices: int,
    timeout_s: float = 120,
) -> dict[str, Any]:
    """Two workers under a steady load; one stopped with ``how`` half-way through."""
    tag = f"down-{how.name.lower()}-{time.monotonic_ns()}"
    ids = [f"homeward-hw-{tag}-{i}" for i in range(2)]
    timing = {
        "HOMEWARD_MQTT_HEARTBEAT_S": str(HEARTBEAT_S),
        "HOMEWARD_MQTT_PEER_TIMEOUT_S": str(PEER_TIMEOUT_S),
    }
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE readings")
        conn.commit()
    procs = [_worker(settings, client_id, tag, **timing) for client_id in ids]
    try:
        deadline = time.monotonic() + 60
        while not _members_active(dsn, ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # both subscribed
        load = subprocess.Popen(
            [sys.executable, "-m", "tools.bench.load", settings.mqtt_url or "",
             settings.topic_root, str(rate), str(duration_s), "bench-bp-", str(devices)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(duration_s / 2)
        stopped_at = time.monotonic()
        procs[1].send_signal(how)
        procs[1].wait(60)
        out, _ = load.communicate(timeout=duration_s + 120)
        expected = int(out.decode().strip() or 0) * READINGS_PER_MESSAGE
        deadline = time.monotonic() + timeout_s
        while _delays(dsn)[0] < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        all_stored_s = time.monotonic() - stopped_at
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(60)
        for client_id in ids:
            drop_session(settings, client_id)
    distinct, p99, worst, late = _delays(dsn)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    stored = int(row[0]) if row else 0
    return {
        "stopped_with": how.name,
        "rate": rate,
        "peer_timeout_s": PEER_TIMEOUT_S,
        "heartbeat_s": HEARTBEAT_S,
        "expected": expected,
        "lost": expected - distinct,
        "duplicated": stored - distinct,
        "delay_p99_s": p99,
        "delay_max_s": worst,
        "readings_over_1s": late,
        "all_stored_after_stop_s": all_stored_s,
    }


def scale_down(
    settings: Settings, dsn: str, *, rate: float, duration_s: float, devices: int
) -> list[dict[str, Any]]:
    """The scale-down figure: one of two workers stopped gracefully, then one killed."""
    return [
        stop_one_of_two(settings, dsn, how=how, rate=rate, duration_s=duration_s, devices=devices)
        for how in (signal.SIGTERM, signal.SIGKILL)
    ]


def scale_down_figures(down: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs, and each run's worst delay as a figure of the report."""
    figures: dict[str, Any] = {"scale_down": down}
    for d in down:
        key = f"scale_down_{d['stopped_with'].lower()}_delay_max_s"
        figures |= {
            key: d["delay_max_s"],
            f"{key}_min": d["delay_max_s"],
            f"{key}_max": d["delay_max_s"],
        }
    return figures
