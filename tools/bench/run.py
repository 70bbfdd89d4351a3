"""``homeward bench``: every figure measured in the same run as its reference."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql
from rich.console import Console

from alerts import adherence
from homeward.config import Settings
from homeward.db.connect import with_database
from homeward.db.migrate import upgrade
from homeward.db.policies import timescaledb_enabled
from homeward.heap import restored_afterwards
from ingest.writer import StoredReading
from service.wiring import HomewardService
from tools.bench import drain
from tools.bench.api_load import CLIENTS, HISTORY_DAYS, measure_api
from tools.bench.rule_cost import rule_cost_in_own_process
from tools.bench.scale_out import (
    compare_alerts,
    drain_with_workers,
    scale_down,
    scale_down_figures,
)
from tools.bench.stats import percentiles_ms, summarise
from tools.bench.workload import (
    BENCH_TEAM,
    READINGS_PER_MESSAGE,
    create_session,
    drop_session,
    make_messages,
    publish_all,
    register_fleet,
)
from tools.embedded.mosquitto import EmbeddedMosquitto, free_port
from tools.embedded.postgres import EmbeddedPostgres

console = Console(stderr=True)
API_FIGURES = (  # result key prefix, round key in measure_api
    ("api_queue", "queue"),
    ("api_patient_7d", "raw"),
    ("api_patient_7d_hourly", "hour"),
    ("api_ref_sql_7d", "sql"),
    ("api_fhir_7d", "fhir"),
)


@dataclass(frozen=True, slots=True)
class BenchParams:
    messages: int = 200_000
    patients: int = 10_000
    naive_messages: int = 20_000
    repetitions: int = 3
    load_rate: float = 2_000.0
    load_duration_s: float = 60.0
    api_duration_s: float = 10.0  # per endpoint and round, 20 concurrent clients
    profile: Path | None = None  # pyinstrument report of the first Homeward drain

    @classmethod
    def quick(cls) -> BenchParams:
        return cls(
            messages=20_000,
            patients=2_000,
            naive_messages=3_000,
            load_rate=500,
            load_duration_s=5,
            api_duration_s=1.5,
        )


@contextlib.contextmanager
def bench_database(settings: Settings, workdir: Path) -> Iterator[str]:
    """A fresh database on the configured server, or on a private embedded one."""
    name = f"homeward_bench_{os.getpid()}"
    if settings.database_url:
        admin = settings.database_url
        server = None
    else:
        server = EmbeddedPostgres(workdir / "pg", free_port())
        admin = server.start()
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield with_database(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        if server is not None:
            server.stop("fast")


STORAGE_PATIENTS = 200
STORAGE_DAYS = 7
STORAGE_EVERY_S = 300  # a reading pair every five minutes: a home hub's steady stream


def _fill_for_storage(dsn: str) -> int:
    """A week of realistic readings (systolic and diastolic every 5 minutes) for 200 of
    the registered patients, by COPY: what compression sees in production."""
    start = datetime(2026, 1, 5, tzinfo=UTC)
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE readings")
        pairs = conn.execute(
            "SELECT b.device_id, b.patient_id FROM device_bindings b ORDER BY b.patient_id"
            " LIMIT %s",
            (STORAGE_PATIENTS,),
        ).fetchall()
        rows = 0
        with conn.cursor().copy(
            "COPY readings (time, patient_id, device_id, metric, value, received_at, msg_id)"
            " FROM STDIN"
        ) as copy:
            for step in range(STORAGE_DAYS * 86_400 // STORAGE_EVERY_S):
                at = start + timedelta(seconds=step * STORAGE_EVERY_S)
                for device, patient in pairs:
                    msg = f"s{step}"
                    copy.write_row((at, patient, device, "systolic_bp", 120 + step % 17, at, msg))
                    copy.write_row((at, patient, device, "diastolic_bp", 80 + step % 9, at, msg))
                    rows += 2
        conn.commit()
    return rows


def _storage(dsn: str) -> dict[str, Any]:
    rows = _fill_for_storage(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        timescale = timescaledb_enabled(conn)
        conn.execute("VACUUM ANALYZE readings")
        size_sql = (
            "SELECT hypertable_size('readings')"
            if timescale
            else "SELECT pg_total_relation_size('readings')"
        )
        size = conn.execute(size_sql).fetchone()
        assert size is not None
        result: dict[str, Any] = {
            "bytes_per_reading": int(size[0]) / rows,
            "bytes_per_reading_compressed": None,
        }
        if timescale:
            conn.execute("SELECT compress_chunk(c, true) FROM show_chunks('readings') c")
            after = conn.execute(size_sql).fetchone()
            assert after is not None
            result["bytes_per_reading_compressed"] = int(after[0]) / rows
    return result


def _check_exactly_once(dsn: str, expected: int) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, msg_id, metric)) FROM readings"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _drain_round(
    base: Settings, dsn: str, messages: list[tuple[str, bytes]], params: BenchParams, rep: int
) -> dict[str, Any]:
    tag = f"r{rep}-{time.monotonic_ns()}"
    hw = base.model_copy(
        update={"mqtt_client_id": f"homeward-hw-{tag}", "mqtt_share_group": f"hw{tag}"}
    )
    noop_id, naive_id = f"noop-{tag}", f"naive-{tag}"
    for client_id, group in (
        (hw.mqtt_client_id, hw.mqtt_share_group),
        (noop_id, f"noop{tag}"),
        (naive_id, f"naive{tag}"),
    ):
        create_session(base, client_id, f"$share/{group}/{base.readings_topic()}")
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE readings")
        conn.commit()
    publish_rate = publish_all(base, messages)
    n = len(messages)
    noop = drain.drain_noop(base, noop_id, n, timeout_s=600)
    drop_session(base, noop_id)
    profile = params.profile if rep == 0 else None
    homeward = asyncio.run(
        drain.drain_homeward(hw, n * READINGS_PER_MESSAGE, timeout_s=900, profile=profile)
    )
    drop_session(base, hw.mqtt_client_id)
    stored, distinct = _check_exactly_once(dsn, n * READINGS_PER_MESSAGE)
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE readings")
        conn.commit()
    naive = drain.drain_naive(base, naive_id, params.naive_messages, timeout_s=600)
    drop_session(base, naive_id)  # it drained only its share: the rest would stay queued
    copy = drain.copy_limit(dsn, messages)
    return {
        "publish_messages_per_s": publish_rate,
        "homeward": homeward.readings_per_s,
        "warm_s": homeward.warm_s,
        "noop": noop.readings_per_s,
        "naive": naive.readings_per_s,
        "copy": copy.readings_per_s,
        "lost": n * READINGS_PER_MESSAGE - distinct,
        "duplicated": stored - distinct,
    }


async def _latency(
    base: Settings, dsn: str, params: BenchParams, rep: int
) -> tuple[list[float], list[float], list[float]]:
    """Publish → committed for every reading; for the readings that raised or updated an
    alert (written in the same transaction, so visible in the alerts table at commit); and
    publish → the alert's notification received on the team's live stream (the
    ``homeward_team_<team>`` channel the HTTP API relays), by a listener in the service's
    own event loop."""
    latencies: list[float] = []
    alerting: list[float] = []
    streamed: list[float] = []
    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await listener.execute(f"LISTEN homeward_team_{BENCH_TEAM}")

    async def listen() -> None:
        async for note in listener.notifies():
            at = datetime.fromisoformat(orjson.loads(note.payload)["measured_at"])
            streamed.append((datetime.now(UTC) - at).total_seconds())

    listening = asyncio.create_task(listen())

    async def record(rows: list[StoredReading]) -> None:
        now = datetime.now(UTC)
        for r in rows:
            latency = (now - r.time).total_seconds()
            latencies.append(latency)
            if r.metric == "systolic_bp" and r.value >= 180:
                alerting.append(latency)

    settings = base.model_copy(update={"mqtt_client_id": f"homeward-hw-lat-{os.getpid()}-{rep}"})
    service = HomewardService(settings, handlers=(record,), own_process=True)
    stop = asyncio.Event()
    ready = asyncio.Event()
    with restored_afterwards():
        task = asyncio.create_task(service.run(stop, ready=ready))
        await ready.wait()
        while not service.source.stats.connected:
            await asyncio.sleep(0.05)
        load = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tools.bench.load",
            base.mqtt_url or "",
            base.topic_root,
            str(params.load_rate),
            str(params.load_duration_s),
            "bench-bp-",
            str(params.patients),
            stdout=subprocess.PIPE,
        )
        out, _ = await load.communicate()
        sent = int(out.decode().strip() or 0)
        deadline = time.monotonic() + 30
        while (
            service.pipeline.stats.stored < sent * READINGS_PER_MESSAGE
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.05)
        stop.set()
        await task
    drop_session(base, settings.mqtt_client_id)
    await asyncio.sleep(0.1)  # the last commit's notifications
    listening.cancel()
    await listener.close()
    return latencies, alerting, streamed


async def _adherence_pass(dsn: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        return await adherence.check(conn, datetime.now(UTC))


def _api_figures(api: dict[str, Any]) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "api_history_readings": api["rows"],
        "api_history_load_s": api["load_s"],
    }
    for name, kind in API_FIGURES:
        for stat in ("p50", "p99"):
            figures |= summarise(f"{name}_{stat}_ms", [r[kind][stat] for r in api["rounds"]])
    ratios = [r["fhir"]["p99"] / r["raw"]["p99"] for r in api["rounds"]]
    return figures | summarise("api_fhir_ratio_raw", ratios)


def run_benchmark(settings: Settings, params: BenchParams) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="homeward-bench-") as tmp:
        workdir = Path(tmp)
        broker = EmbeddedMosquitto(workdir / "mqtt", free_port(), autosave_interval_s=60)
        broker.start()
        try:
            with bench_database(settings, workdir) as dsn:
                return _run(settings, params, broker.url, dsn)
        finally:
            broker.stop()


def _run(settings: Settings, params: BenchParams, broker_url: str, dsn: str) -> dict[str, Any]:
    base = settings.model_copy(
        update={
            "database_url": dsn,
            "mqtt_url": broker_url,
            "http_port": 0,
            "topic_root": "bench/homeward/v1",
        }
    )
    upgrade(dsn)
    console.print(f"registering {params.patients} patients and devices …")
    devices = register_fleet(dsn, params.patients)
    messages = make_messages(base, devices, params.messages)
    rounds = []
    for rep in range(params.repetitions):
        console.print(f"drain round {rep + 1}/{params.repetitions} ({len(messages)} messages) …")
        rounds.append(_drain_round(base, dsn, messages, params, rep))
    console.print("scale-out: one worker process, then two sharing the subscription …")
    scale = [drain_with_workers(base, dsn, messages, n) for n in (1, 2)]
    # Steady state: the fleet's missed-reading alerts (no bench patient sends a weight)
    # raised before the load, as they would have been at the day's deadline; a pass
    # during the load then finds them recorded (the deadline burst: docs/performance.md).
    asyncio.run(_adherence_pass(dsn))
    steady = []
    for rep in range(params.repetitions):
        console.print(
            f"steady load {params.load_rate:.0f} msg/s for {params.load_duration_s:.0f} s"
            f" ({rep + 1}/{params.repetitions}) …"
        )
        with psycopg.connect(dsn) as conn:
            conn.execute("TRUNCATE readings")
            conn.commit()
        steady.append(asyncio.run(_latency(base, dsn, params, rep)))
    storage = _storage(dsn)
    console.print(
        f"API: {HISTORY_DAYS} days of readings for {params.patients} patients, "
        f"then {CLIENTS} concurrent clients …"
    )
    api = measure_api(dsn, duration_s=params.api_duration_s, repetitions=params.repetitions)
    result: dict[str, Any] = {}
    result |= summarise("drain_readings_per_s", [r["homeward"] for r in rounds])
    result |= summarise("drain_ratio_noop", [r["homeward"] / r["noop"] for r in rounds])
    result |= summarise("drain_ratio_naive", [r["homeward"] / r["naive"] for r in rounds])
    result |= summarise("drain_warm_s", [r["warm_s"] for r in rounds])
    result |= summarise("noop_readings_per_s", [r["noop"] for r in rounds])
    result |= summarise("naive_readings_per_s", [r["naive"] for r in rounds])
    result |= summarise("copy_readings_per_s", [r["copy"] for r in rounds])
    commits = [percentiles_ms(latencies) for latencies, _, _ in steady]
    for stat in ("p50", "p99", "max"):
        result |= summarise(f"latency_commit_{stat}_ms", [c[stat] for c in commits])
    console.print(f"rule cost with {params.patients} patients in memory …")
    cost = rule_cost_in_own_process(params.patients, params.messages, params.repetitions)
    for key, values in cost.items():
        result |= summarise(key, list(values))
    # Visible on the stream comes after visible in the table (NOTIFY is sent at COMMIT).
    result |= summarise("latency_alert_p99_ms", [percentiles_ms(s)["p99"] for _, _, s in steady])
    result |= summarise(
        "latency_alert_table_p99_ms", [percentiles_ms(a)["p99"] for _, a, _ in steady]
    )
    result["alert_notifications"] = sum(len(s) for _, _, s in steady)
    result |= _api_figures(api)
    result |= summarise("bytes_per_reading", [storage["bytes_per_reading"]])
    result |= summarise("bytes_per_reading_compressed", [storage["bytes_per_reading_compressed"]])
    result |= summarise(
        "scale_out_ratio", [scale[1]["readings_per_s"] / scale[0]["readings_per_s"]]
    )
    result |= {
        "scale_out_alerts": compare_alerts(scale[0], scale[1]),
        "scale_out": [{k: v for k, v in s.items() if k != "alerts"} for s in scale],
    }
    result |= scale_down_figures(
        scale_down(
            base,
            dsn,
            rate=params.load_rate,
            duration_s=params.load_duration_s,
            devices=params.patients,
        )
    )
    result["lost"] = (
        sum(r["lost"] for r in rounds)
        + sum(s["lost"] for s in scale)
        + sum(d["lost"] for d in result["scale_down"])
    )
    result["duplicated"] = sum(r["duplicated"] for r in rounds) + sum(
        s["duplicated"] + s["duplicate_open_alerts"] for s in scale
    )
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    with psycopg.connect(dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        result["machine"]["postgresql"] = version[0] if version else None
        result["machine"]["timescaledb"] = timescaledb_enabled(conn)
    result["params"] = {
        k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(params).items()
    }
    return result
