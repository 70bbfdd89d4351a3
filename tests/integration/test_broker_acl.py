"""A device can publish only for itself: Mosquitto with the password and ACL files that
`homeward device broker-files` writes from the registry."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from commands.main import cli
from devices.credentials import hash_password
from devices.registry import add_device, add_patient
from homeward.config import MqttEndpoint
from homeward.mqtt import make_client
from support import reading_payload
from tools.embedded.mosquitto import EmbeddedMosquitto, free_port

NHS = "9434765919"


@pytest.fixture
def secured_port(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="ACL")
        add_device(conn, "bp-a", patient_nhs_number=NHS, password="secret-a")
        add_device(conn, "bp-b", patient_nhs_number=NHS, password="secret-b")
        conn.commit()
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    out = tmp_path / "broker"
    result = CliRunner().invoke(cli, ["device", "broker-files", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with (out / "passwords").open("a") as fh:  # the ingest account, added by the operator
        fh.write(f"homeward-ingest:{hash_password('ingest-pw')}\n")
    broker = EmbeddedMosquitto(
        tmp_path / "mqtt", free_port(), password_file=out / "passwords", acl_file=out / "acl"
    )
    broker.start()
    yield broker.port
    broker.stop()


def client(port: int, user: str, password: str) -> Any:
    return make_client(MqttEndpoint("127.0.0.1", port, False, user, password), user)


def test_a_device_cannot_publish_for_another(secured_port: int) -> None:
    got: list[str] = []
    arrived = threading.Event()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        got.append(msg.topic)
        arrived.set()

    ingest = client(secured_port, "homeward-ingest", "ingest-pw")
    ingest.on_message = on_message
    ingest.connect("127.0.0.1", secured_port)
    ingest.loop_start()
    ingest.subscribe("homeward/v1/devices/+/readings", qos=1)
    device = client(secured_port, "bp-a", "secret-a")
    device.connect("127.0.0.1", secured_port)
    device.loop_start()
    time.sleep(0.5)
    payload = reading_payload("x", [("systolic_bp", 120, "mm[Hg]")])
    device.publish("homeward/v1/devices/bp-b/readings", payload, qos=1).wait_for_publish(5)
    device.publish("homeward/v1/devices/bp-a/readings", payload, qos=1).wait_for_publish(5)
    assert arrived.wait(5)
    time.sleep(0.5)
    for each in (device, ingest):
        each.disconnect()
        each.loop_stop()
    assert got == ["homeward/v1/devices/bp-a/readings"]


def test_a_wrong_password_is_refused(secured_port: int) -> None:
    refused: list[bool] = []
    answered = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        refused.append(reason.is_failure)
        answered.set()

    intruder = client(secured_port, "bp-b", "guess")
    intruder.on_connect = on_connect
    intruder.connect("127.0.0.1", secured_port)
    intruder.loop_start()
    assert answered.wait(5)
    intruder.loop_stop()
    assert refused == [True]
