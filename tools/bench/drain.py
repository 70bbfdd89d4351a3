"""Drain rate: a pre-filled persistent-session queue, drained by Homeward and by the
references, all from the same broker queue contents in the same run.

* no-op: a paho-mqtt subscriber with manual acknowledgement that does nothing else —
  the client-side limit;
* naive: one INSERT and COMMIT per message, acknowledgement after commit;
* COPY: PostgreSQL COPY of the same rows into a table shaped like ``readings`` — the
  storage limit.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg

from homeward.config import Settings
from homeward.heap import restored_afterwards
from homeward.mqtt import connect_properties, make_client
from service.wiring import HomewardService
from tools.bench.workload import READINGS_PER_MESSAGE


@dataclass(frozen=True, slots=True)
class Drained:
    messages: int
    seconds: float
    warm_s: float = 0.0  # Homeward only: loading its patients before subscribing

    @property
    def readings_per_s(self) -> float:
        return self.messages * READINGS_PER_MESSAGE / self.seconds

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds


def _connect_manual_ack(settings: Settings, client_id: str, receive_maximum: int) -> mqtt.Client:
    endpoint = settings.mqtt
    client = make_client(endpoint, client_id, manual_ack=True)
    props = connect_properties(session_expiry_s=3600, receive_maximum=receive_maximum)
    client.connect(endpoint.host, endpoint.port, clean_start=False, properties=props)
    return client


def drain_noop(settings: Settings, client_id: str, expected: int, timeout_s: float) -> Drained:
    """Receive and acknowledge, nothing else; timed from the first message to the last."""
    done = threading.Event()
    state = {"count": 0, "first": 0.0, "last": 0.0}

    def on_message(client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if state["count"] == 0:
            state["first"] = time.perf_counter()
        client.ack(msg.mid, msg.qos)
        state["count"] += 1
        if state["count"] >= expected:
            state["last"] = time.perf_counter()
            done.set()

    client = _connect_manual_ack(settings, client_id, settings.receive_maximum)
    client.on_message = on_message
    began = time.perf_counter()
    client.loop_start()
    done.wait(timeout_s)
    client.disconnect()
    client.loop_stop()
    end = state["last"] or time.perf_counter()
    return Drained(int(state["count"]), end - (state["first"] or began))


def drain_naive(settings: Settings, client_id: str, expected: int, timeout_s: float) -> Drained:
    """One INSERT and one COMMIT per message; acknowledge after the commit. Timed from
    the first message to the last, as the others."""
    done = threading.Event()
    count = 0
    first = 0.0
    conn = psycopg.connect(settings.dsn)
    insert = (
        "INSERT INTO readings (time, patient_id, device_id, metric, value, received_at, msg_id)"
        " SELECT %(t)s, b.patient_id, %(d)s, r.metric, r.value, now(), %(m)s"
        " FROM device_bindings b, unnest(%(metrics)s::text[], %(values)s::float8[])"
        " AS r (metric, value) WHERE b.device_id = %(d)s ON CONFLICT DO NOTHING"
    )

    def on_message(client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal count, first
        first = first or time.perf_counter()
        doc = orjson.loads(msg.payload)
        device = msg.topic.split("/")[-2]
        conn.execute(
            insert,
            {
                "t": datetime.fromisoformat(doc["measured_at"]),
                "d": device,
                "m": doc["msg_id"],
                "metrics": [r["metric"] for r in doc["readings"]],
                "values": [r["value"] for r in doc["readings"]],
            },
        )
        conn.commit()
        client.ack(msg.mid, msg.qos)
        count += 1
        if count >= expected:
            done.set()

    client = _connect_manual_ack(settings, client_id, 1000)
    client.on_message = on_message
    began = time.perf_counter()
    client.loop_start()
    done.wait(timeout_s)
    elapsed = time.perf_counter() - (first or began)
    client.disconnect()
    client.loop_stop()
    conn.close()
    return Drained(count, elapsed)


def copy_limit(dsn: str, messages: list[tuple[str, bytes]]) -> Drained:
    """COPY the same rows into a table shaped like readings (same unique index)."""
    rows = []
    now = datetime.now(UTC)
    for topic, payload in messages:
        doc = orjson.loads(payload)
        at = datetime.fromisoformat(doc["measured_at"])
        device = topic.split("/")[-2]
        for r in doc["readings"]:
            rows.append((at, 1, device, r["metric"], float(r["value"]), now, doc["msg_id"]))
    with psycopg.connect(dsn) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute("CREATE TABLE bench_copy (LIKE readings INCLUDING ALL)")
        conn.commit()
        began = time.perf_counter()
        with conn.cursor().copy(
            "COPY bench_copy (time, patient_id, device_id, metric, value, received_at, msg_id)"
            " FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - began
        conn.execute("DROP TABLE bench_copy")
        conn.commit()
    return Drained(len(messages), elapsed)


async def drain_homeward(
    settings: Settings, expected_readings: int, timeout_s: float, profile: Path | None = None
) -> Drained:
    """The real service, from its first message until every reading is stored — like the
    references, the rate leaves out start-up (connecting, and loading every bound
    patient's rules and history, which is reported as ``warm_s``).
    Optionally profiled with pyinstrument: a text report is written to ``profile``."""
    profiler = None
    if profile is not None:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled")
        profiler.start()
    service = HomewardService(settings, own_process=True)
    stop = asyncio.Event()
    deadline = time.time() + timeout_s
    with restored_afterwards():
        task = asyncio.create_task(service.run(stop))
        while service.pipeline.stats.stored < expected_readings and time.time() < deadline:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        elapsed = time.time() - service.source.stats.first_message_at
        stop.set()
        await task
    if profiler is not None and profile is not None:
        profiler.stop()
        profile.write_text(profiler.output_text(unicode=True, show_all=False))
    return Drained(service.pipeline.stats.stored // READINGS_PER_MESSAGE, elapsed, service.warm_s)
