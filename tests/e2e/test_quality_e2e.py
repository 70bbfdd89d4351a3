"""Questionable readings through the running service (issue 14, items 5 and 6; hazard H14):
MQTT in, PostgreSQL, feedback out on the device's own topic, the adherence pass's
technical alert — and feedback only ever to the device that took the reading."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest

from alerts.adherence import check
from alerts.engine import Freshness, RuleEngine
from alerts.quality import KNOWN_FLAGS, questionable
from alerts.store import refresh_patients
from devices.registry import add_device, add_patient
from homeward.config import Settings
from homeward.metrics import CATALOGUE
from homeward.mqtt import make_client
from support import (
    Publisher,
    async_wait_until,
    count_rows,
    make_settings,
    purge_session,
    running_service,
    unique,
)

NHS = "9434765919"


@pytest.fixture
def settings(db_url: str, broker_url: str) -> Iterator[Settings]:
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Cuff", team="deal", conditions=["hypertension"])
        add_device(conn, "bp-1", patient_nhs_number=NHS, kind="bp_cuff")
        add_device(conn, "sc-1", patient_nhs_number=NHS, kind="scales")
        conn.commit()
    s = make_settings(db_url, broker_url)
    yield s
    purge_session(s)


def bp(msg_id: str, systolic: float, at: datetime, flags: list[str] | None = None) -> bytes:
    extra = {"flags": flags} if flags else {}
    return orjson.dumps(
        {
            "msg_id": msg_id,
            "measured_at": at.isoformat(),
            "readings": [
                {"metric": "systolic_bp", "value": systolic, "unit": "mm[Hg]", **extra},
                {"metric": "diastolic_bp", "value": 96, "unit": "mm[Hg]", **extra},
            ],
        }
    )


class Listener:
    """Every feedback message of every device of the test, with the device it went to."""

    def __init__(self, settings: Settings) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.client = make_client(settings.mqtt, unique("patient-"))
        self.client.on_message = lambda _c, _u, msg: self.received.append(
            (msg.topic.split("/")[-2], orjson.loads(msg.payload))
        )
        self.client.connect(settings.mqtt.host, settings.mqtt.port)
        self.client.subscribe(settings.device_topic("+", "feedback"), qos=1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def alerts(db_url: str) -> dict[str, str]:
    with psycopg.connect(db_url) as conn:
        return dict(conn.execute("SELECT rule_id, priority FROM alerts").fetchall())


async def test_a_questionable_reading_gets_a_retake_request_and_no_clinical_alarm(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    listener = Listener(settings)
    pub = Publisher(broker_url)
    at = datetime.now(UTC).replace(microsecond=0)
    try:
        async with running_service(settings) as service:
            payload = bp("q1", 192, at, ["cuff_fit"])
            pub.publish(settings.readings_topic("bp-1"), payload)
            pub.publish(settings.readings_topic("bp-1"), payload)  # redelivered: asked once
            await async_wait_until(lambda: listener.received != [], what="retake request")
            assert service.pipeline.stats.stored == 2
    finally:
        pub.close()
        listener.close()
    assert [device for device, _ in listener.received] == ["bp-1"]  # not the scales
    request = listener.received[0][1]
    assert request["kind"] == "retake"
    assert request["metrics"] == ["diastolic_bp", "systolic_bp"]
    assert request["flags"] == ["cuff_fit"]
    assert "cuff" in request["message"]
    assert alerts(db_url) == {}  # 192 mmHg with a loose cuff: no clinical alarm
    async with await psycopg.AsyncConnection.connect(db_url) as aconn:
        await check(aconn, at + timedelta(minutes=29))
        assert alerts(db_url) == {}
        await check(aconn, at + timedelta(minutes=31))  # no good retake within 30 minutes
    assert alerts(db_url) == {"retake:systolic_bp": "technical", "retake:diastolic_bp": "technical"}
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT team_id, details->>'device_id', message FROM alerts"
            " WHERE rule_id = 'retake:systolic_bp'"
        ).fetchone()
    assert row is not None
    assert row[:2] == ("deal", "bp-1")
    assert "cuff_fit" in row[2]


async def test_a_good_retake_is_judged_and_only_its_device_is_told(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    listener = Listener(settings)
    pub = Publisher(broker_url)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    try:
        async with running_service(settings):
            pub.publish(settings.readings_topic("bp-1"), bp("q1", 188, at, ["body_movement"]))
            await async_wait_until(lambda: len(listener.received) == 1, what="retake request")
            pub.publish(settings.readings_topic("bp-1"), bp("g1", 186, at + timedelta(minutes=2)))
            await async_wait_until(
                lambda: "threshold:systolic_bp:severe" in alerts(db_url), what="severe alert"
            )
            await async_wait_until(lambda: len(listener.received) >= 2, what="alert feedback")
    finally:
        pub.close()
        listener.close()
    assert {device for device, _ in listener.received} == {"bp-1"}
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await check(conn, at + timedelta(hours=1))
    assert not any(rule.startswith("retake:") for rule in alerts(db_url))
    assert count_rows(db_url, "SELECT count(*) FROM notifications WHERE target = 'sc-1'") == 0


def test_the_sql_classification_is_the_python_one(db_url: str) -> None:
    flags = [*sorted(KNOWN_FLAGS), "battery_low"]
    sets: list[list[str] | None] = [None, [], *([f] for f in flags)]
    sets += [list(pair) for pair in itertools.combinations(flags, 2)]
    with psycopg.connect(db_url) as conn:
        for metric in CATALOGUE:
            for flag_set in sets:
                row = conn.execute(
                    "SELECT homeward_questionable(%s, %s::text[])", (metric, flag_set)
                ).fetchone()
                assert row is not None
                assert row[0] is questionable(metric, flag_set), (metric, flag_set)


async def test_a_restarted_engine_loads_no_questionable_reading(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        patient = add_patient(
            conn, nhs_number=NHS, name="P", conditions=["heart_failure"], team="deal"
        )
        at = datetime.now(UTC) - timedelta(days=1)
        for msg, value, flags in (("w1", 80.0, None), ("w2", 95.0, ["implausible"])):
            conn.execute(
                "INSERT INTO readings (time, patient_id, device_id, metric, value, received_at,"
                " msg_id, flags) VALUES (%s, %s, 'sc-1', 'body_weight', %s, %s, %s, %s)",
                (at, patient.patient_id, value, at, msg, flags),
            )
        conn.commit()
    engine = RuleEngine()
    async with await psycopg.AsyncConnection.connect(db_url) as aconn, aconn.cursor() as cur:
        current = {patient.patient_id: Freshness(0, 0, ("heart_failure",))}
        await refresh_patients(cur, engine, current, datetime.now(UTC))
    assert engine.patients[patient.patient_id].series["body_weight"].values.tolist() == [80.0]
