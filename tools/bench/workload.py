"""Benchmark workload: a registered fleet and pre-encoded reading messages.

Messages come from the fleet simulator's bulk generator when it is available (two
readings each: systolic and diastolic blood pressure), spread over every device.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
import psycopg

from homeward.config import Settings
from homeward.mqtt import connect_properties, make_client
from homeward.nhs import check_digit

READINGS_PER_MESSAGE = 2
BENCH_TEAM = "deal"  # every bench patient's team: its live stream is measured


def synthetic_nhs_numbers(count: int) -> list[str]:
    """Valid NHS numbers in the 999 range (never issued to real people)."""
    numbers: list[str] = []
    base = 999_000_000
    while len(numbers) < count:
        first_nine = str(base)
        digit = check_digit(first_nine)
        if digit is not None:
            numbers.append(first_nine + str(digit))
        base += 1
    return numbers


@dataclass(frozen=True, slots=True)
class Workload:
    devices: list[str]
    messages: list[tuple[str, bytes]]

    @property
    def readings(self) -> int:
        return len(self.messages) * READINGS_PER_MESSAGE


def register_fleet(dsn: str, patients: int) -> list[str]:
    """One patient (heart failure and hypertension: their rules run on every reading) and
    one BP cuff each, loaded with COPY (seconds for 10,000)."""
    devices = [f"bench-bp-{i:05d}" for i in range(patients)]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(  # every patient belongs to a team that exists
            "INSERT INTO teams (team_id, name, locality, calendar)"
            " VALUES (%s, 'Bench team (fictional)', 'Bench', '{}') ON CONFLICT DO NOTHING",
            (BENCH_TEAM,),
        )
        with cur.copy(
            "COPY patients (nhs_number, display_name, team_id, conditions) FROM STDIN"
        ) as copy:
            for i, nhs in enumerate(synthetic_nhs_numbers(patients)):
                copy.write_row(
                    (
                        nhs,
                        f"Bench Patient {i:05d} (fictional)",
                        BENCH_TEAM,
                        ["heart_failure", "hypertension"],
                    )
                )
        with cur.copy("COPY devices (device_id, kind) FROM STDIN") as copy:
            for device in devices:
                copy.write_row((device, "bp_cuff"))
        cur.execute(
            "INSERT INTO device_bindings (device_id, patient_id, valid_from)"
            " SELECT 'bench-bp-' || lpad((patient_id - 1)::text, 5, '0'), patient_id, '-infinity'"
            " FROM patients WHERE display_name LIKE 'Bench Patient %'"
        )
        conn.commit()
    return devices


def make_messages(settings: Settings, devices: list[str], count: int) -> list[tuple[str, bytes]]:
    start = datetime.now(UTC) - timedelta(hours=1)
    messages = []
    for i in range(count):
        device = devices[i % len(devices)]
        at = start + timedelta(milliseconds=i)
        doc = {
            "msg_id": f"b{i}",
            "measured_at": at.isoformat(),
            "device_seq": i // len(devices),  # each device counts its messages, as devices do
            "readings": [
                {"metric": "systolic_bp", "value": 110 + i % 50, "unit": "mm[Hg]"},
                {"metric": "diastolic_bp", "value": 70 + i % 20, "unit": "mm[Hg]"},
            ],
        }
        messages.append((settings.readings_topic(device), orjson.dumps(doc)))
    return messages


def create_session(settings: Settings, client_id: str, subscription: str) -> None:
    """Make the broker keep a persistent session that queues for ``subscription``."""
    client = make_client(settings.mqtt, client_id)
    props = connect_properties(session_expiry_s=3600)
    client.connect(settings.mqtt.host, settings.mqtt.port, clean_start=True, properties=props)
    client.loop_start()
    info = client.subscribe(subscription, qos=1)
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    del info
    client.disconnect()
    client.loop_stop()


def drop_session(settings: Settings, client_id: str) -> None:
    """Make the broker forget a persistent session (clean start, expiry 0): one left
    behind would keep queueing every later message, and the broker's work with it."""
    client = make_client(settings.mqtt, client_id)
    props = connect_properties(session_expiry_s=0)
    with contextlib.suppress(OSError):
        client.connect(settings.mqtt.host, settings.mqtt.port, clean_start=True, properties=props)
        client.loop_start()
        deadline = time.monotonic() + 10
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        client.disconnect()
        client.loop_stop()


def publish_all(settings: Settings, messages: list[tuple[str, bytes]], window: int = 2000) -> float:
    """Publish QoS 1 with at most ``window`` unacknowledged; returns messages/s."""
    client = make_client(settings.mqtt, f"bench-pub-{time.monotonic_ns()}")
    client.max_inflight_messages_set(window)
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    began = time.perf_counter()
    pending: list[mqtt.MQTTMessageInfo] = []
    for topic, payload in messages:
        pending.append(client.publish(topic, payload, qos=1))
        if len(pending) >= window:
            for info in pending:
                info.wait_for_publish(60)
            pending.clear()
    for info in pending:
        info.wait_for_publish(60)
    elapsed = time.perf_counter() - began
    client.disconnect()
    client.loop_stop()
    return len(messages) / elapsed
