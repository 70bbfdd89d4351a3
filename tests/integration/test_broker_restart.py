"""Readings the broker acknowledged survive a broker restart (issue 12 item 7).

Mosquitto 2.0.11 restores a persistent session after a restart but not its ``$share``
subscription: until a worker subscribes again, devices get PUBACK 0x10 "no matching
subscribers" — a success code — and drop their readings. A plain subscription is
restored. So with ``HOMEWARD_MQTT_SHARE_GROUP`` empty (one worker, or workers that each
take every reading) every acknowledged reading is stored; with a share group the
readings of that window are refused by the broker and show as a data gap.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts import adherence
from alerts.data_gaps import GAP_GRACE_S
from devices.registry import add_device, add_patient
from homeward.config import MqttEndpoint, Settings
from homeward.mqtt import make_client
from support import count_rows, make_settings, reading_payload, running_service, unique
from tools.embedded.mosquitto import EmbeddedMosquitto

pytestmark = pytest.mark.slow

NHS = "9434765919"


def seed(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Restart Patient", team="deal")
        add_device(conn, "ox-r", patient_nhs_number=NHS)
        conn.commit()


def publish(settings: Settings, seqs: range) -> list[str]:
    """Publish QoS 1 as a device would and return the broker's PUBACK reason codes."""
    endpoint = MqttEndpoint.from_url(settings.mqtt_url or "")
    client = make_client(endpoint, unique("dev-"))
    codes: dict[int, str] = {}
    client.on_publish = lambda _c, _u, mid, reason, _p: codes.__setitem__(mid, str(reason))
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    try:
        at = datetime.now(UTC) - timedelta(minutes=10)
        infos = [
            client.publish(
                settings.readings_topic("ox-r"),
                reading_payload(
                    f"r-{seq}",
                    [("spo2", 95, "%")],
                    measured_at=at + timedelta(seconds=seq),
                    device_seq=seq,
                ),
                qos=1,
            )
            for seq in seqs
        ]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return [codes[info.mid] for info in infos]


async def restart_broker_while_ingest_is_away(
    settings: Settings, broker: EmbeddedMosquitto
) -> list[str]:
    """Readings 1 and 2 stored; ingest stops; the broker restarts (SIGTERM: it saves its
    persistence file); readings 3–5 published; ingest starts and reading 6 follows."""
    async with running_service(settings) as service:
        assert publish(settings, range(1, 3)) == ["Success"] * 2
        while service.pipeline.stats.stored < 2:
            await asyncio.sleep(0.05)
    broker.stop()
    broker.start()
    codes = publish(settings, range(3, 6))
    async with running_service(settings) as service:
        assert publish(settings, range(6, 7)) == ["Success"]
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        expected = 6 if codes == ["Success"] * 3 else 3
        while service.pipeline.stats.stored < expected and datetime.now(UTC) < deadline:
            await asyncio.sleep(0.05)
    return codes


async def test_without_a_share_group_an_acknowledged_reading_survives_a_broker_restart(
    db_url: str, own_broker: EmbeddedMosquitto
) -> None:
    seed(db_url)
    settings = make_settings(db_url, own_broker.url, mqtt_share_group="")
    codes = await restart_broker_while_ingest_is_away(settings, own_broker)
    assert codes == ["Success"] * 3  # the plain subscription was restored with the session
    assert count_rows(db_url, "SELECT count(DISTINCT device_seq) FROM readings") == 6


async def test_with_a_share_group_the_restart_gap_is_refused_by_the_broker_and_alerted(
    db_url: str, own_broker: EmbeddedMosquitto
) -> None:
    """The residual risk on Mosquitto 2.0.11, made visible: the broker answers 0x10 (a
    device that keeps readings until a 0x00 PUBACK resends them), nothing of the window
    is stored, and the hole in device_seq raises a data-gap technical alert."""
    seed(db_url)
    settings = make_settings(db_url, own_broker.url)
    codes = await restart_broker_while_ingest_is_away(settings, own_broker)
    assert codes == ["No matching subscribers"] * 3
    assert count_rows(db_url, "SELECT count(*) FROM readings") == 3
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await adherence.check(conn, datetime.now(UTC) + timedelta(seconds=GAP_GRACE_S + 1))
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT message FROM alerts WHERE kind = 'data_gap'").fetchone()
    assert row is not None
    assert "3 messages never received (sequence numbers 3–5)" in row[0]
