"""The broker's policy, as `homeward device broker-files` writes it, in a real Mosquitto:
every client × every topic × publish and subscribe, then the attacks of issue 12 against
the running service (a device joining ingest's shared subscription, a device connecting
with ingest's client id, a device named like a service account)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from click.testing import CliRunner
from paho.mqtt.reasoncodes import ReasonCode

from commands.main import cli
from devices.credentials import hash_password
from devices.registry import add_device, add_patient
from homeward.config import MqttEndpoint, Settings
from homeward.mqtt import make_client
from support import async_wait_until, count_rows, make_settings, reading_payload, running_service
from tools.embedded.mosquitto import EmbeddedMosquitto, free_port

NHS = "9434765919"
PASSWORDS = {"bp-a": "secret-a", "bp-b": "secret-b", "homeward-ingest": "ingest-pw"}
LEAVES = ("readings", "status", "config", "feedback")
DENIED = 0x87  # MQTT 5 "Not authorized"


@dataclass(frozen=True)
class Secured:
    settings: Settings  # the ingest service's, with its account in the URL
    port: int
    security_file: Path


@pytest.fixture
def secured(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Secured]:
    port = free_port()
    settings = make_settings(db_url, f"mqtt://homeward-ingest:ingest-pw@127.0.0.1:{port}")
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="ACL", team="deal")
        add_device(conn, "bp-a", patient_nhs_number=NHS, password="secret-a")
        add_device(conn, "bp-b", patient_nhs_number=NHS, password="secret-b")
        # A row from before service names were reserved: it must never become a login.
        conn.execute(
            "INSERT INTO devices (device_id, password_hash) VALUES ('homeward-ingest', %s)",
            (hash_password("device-chosen"),),
        )
        conn.commit()
    services = tmp_path / "services"
    services.write_text(f"homeward-ingest:{hash_password('ingest-pw')}\n")
    for name, value in {
        "DATABASE_URL": db_url,
        "TOPIC_ROOT": settings.topic_root,
        "MQTT_SHARE_GROUP": settings.mqtt_share_group,
    }.items():
        monkeypatch.setenv(f"HOMEWARD_{name}", value)
    out = tmp_path / "broker"
    result = CliRunner().invoke(
        cli, ["device", "broker-files", "--out", str(out), "--service-passwords", str(services)]
    )
    assert result.exit_code == 0, result.output
    assert "skipped device homeward-ingest" in result.output
    broker = EmbeddedMosquitto(tmp_path / "mqtt", port, security_file=out / "dynamic-security.json")
    broker.start()
    yield Secured(settings, port, out / "dynamic-security.json")
    broker.stop()


class Probe:
    """A paho client that waits for each CONNACK, SUBACK and PUBACK and returns its code."""

    def __init__(self, port: int, user: str, client_id: str, password: str | None = None) -> None:
        endpoint = MqttEndpoint("127.0.0.1", port, False, user, password or PASSWORDS[user])
        self.client = make_client(endpoint, client_id)
        self._codes: dict[int, int] = {}
        self._arrived = threading.Condition()
        self.received: list[str] = []
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda _c, _u, msg: self.received.append(msg.topic)
        self.connack: int | None = None
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        with self._arrived:
            assert self._arrived.wait_for(lambda: self.connack is not None, timeout=10)

    def _note(self, key: int, code: int) -> None:
        with self._arrived:
            self._codes[key] = code
            self._arrived.notify_all()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        with self._arrived:
            self.connack = reason.value
            self._arrived.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[ReasonCode], _p: Any) -> None:
        self._note(mid, codes[0].value)

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self._note(mid, reason.value)

    def _wait(self, mid: int) -> int:
        with self._arrived:
            assert self._arrived.wait_for(lambda: mid in self._codes, timeout=10)
            return self._codes.pop(mid)

    def subscribe(self, topic_filter: str) -> int:
        _rc, mid = self.client.subscribe(topic_filter, qos=1)
        assert mid is not None
        return self._wait(mid)

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        return self._wait(self.client.publish(topic, payload, qos=1).mid)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def filters(s: Settings) -> list[str]:
    root, group = s.topic_root, s.mqtt_share_group
    return [
        *(f"{root}/devices/{d}/{leaf}" for d in ("bp-a", "bp-b", "+") for leaf in LEAVES),
        f"$share/{group}/{root}/devices/+/readings",
        f"$share/{group}/{root}/devices/bp-a/readings",
        f"$share/other/{root}/devices/+/readings",
        f"$share/{group}/{root}/devices/bp-a/config",
        f"{root}/devices/#",
        f"{root}/devices/bp-a/#",
        "#",
        "$SYS/#",
        "$CONTROL/dynamic-security/#",
    ]


def topics(s: Settings) -> list[str]:
    root = s.topic_root
    return [
        *(f"{root}/devices/{d}/{leaf}" for d in ("bp-a", "bp-b") for leaf in LEAVES),
        f"{root}/devices/bp-a/other",
        f"{root}/other",
        "$CONTROL/dynamic-security/v1",
    ]


def may_subscribe(s: Settings, actor: str, topic_filter: str) -> bool:
    devices = f"{s.topic_root}/devices"
    if actor == "homeward-ingest":
        shared = f"$share/{s.mqtt_share_group}/{devices}/+/readings"
        return topic_filter in {shared, f"{devices}/+/status"}
    return topic_filter in {f"{devices}/{actor}/config", f"{devices}/{actor}/feedback"}


def may_publish(s: Settings, actor: str, topic: str) -> bool:
    devices = f"{s.topic_root}/devices"
    if actor == "homeward-ingest":
        parts = topic.split("/")
        return (
            topic.startswith(f"{devices}/")
            and len(parts) == len(devices.split("/")) + 2
            and (parts[-1] in ("config", "feedback"))
        )
    return topic in {f"{devices}/{actor}/readings", f"{devices}/{actor}/status"}


@pytest.mark.parametrize("actor", ["bp-a", "bp-b", "homeward-ingest"])
def test_every_client_every_topic_publish_and_subscribe(secured: Secured, actor: str) -> None:
    s = secured.settings
    client_id = actor if actor != "homeward-ingest" else "homeward-ingest-probe"
    probe = Probe(secured.port, actor, client_id)
    try:
        assert probe.connack == 0
        got = {("subscribe", f): probe.subscribe(f) != DENIED for f in filters(s)}
        got |= {("publish", t): probe.publish(t) != DENIED for t in topics(s)}
    finally:
        probe.close()
    expected = {("subscribe", f): may_subscribe(s, actor, f) for f in filters(s)}
    expected |= {("publish", t): may_publish(s, actor, t) for t in topics(s)}
    assert {k: v for k, v in got.items() if v != expected[k]} == {}
    assert sum(expected.values()) == (6 if actor == "homeward-ingest" else 4)


@pytest.mark.parametrize(
    ("user", "client_id", "password"),
    [
        ("bp-a", "bp-a", "guess"),  # wrong password
        ("bp-a", "bp-b", None),  # another device's client id
        ("bp-a", "homeward-ingest-1", None),  # the ingest service's client id
        ("bp-a", "", None),  # a client id the broker would make up
        ("homeward-ingest", "homeward-ingest-x", "device-chosen"),  # the legacy row's password
        ("nobody", "nobody", "x"),
    ],
)
def test_a_client_connects_only_as_itself(
    secured: Secured, user: str, client_id: str, password: str | None
) -> None:
    probe = Probe(secured.port, user, client_id, password)
    try:
        assert probe.connack is not None
        assert probe.connack != 0
    finally:
        probe.close()


def test_the_security_file_names_no_device_like_a_service(secured: Secured) -> None:
    doc = orjson.loads(secured.security_file.read_bytes())
    clients = {c["username"]: c for c in doc["clients"]}
    assert set(clients) == {"bp-a", "bp-b", "homeward-ingest"}
    assert clients["homeward-ingest"]["roles"] == [{"rolename": "homeward-ingest"}]
    assert [clients[d]["clientid"] for d in ("bp-a", "bp-b")] == ["bp-a", "bp-b"]
    assert oct(secured.security_file.stat().st_mode & 0o777) == "0o600"


async def test_a_device_cannot_consume_ingests_shared_subscription(
    secured: Secured, db_url: str
) -> None:
    """Finding 4: bp-a joined ingest's share group and consumed half of bp-b's readings."""
    s = secured.settings
    async with running_service(s) as service:
        thief = Probe(secured.port, "bp-a", "bp-a")
        sender = Probe(secured.port, "bp-b", "bp-b")
        try:
            shared = f"$share/{s.mqtt_share_group}/{s.readings_topic()}"
            assert thief.subscribe(shared) == DENIED
            assert thief.subscribe(s.readings_topic()) == DENIED
            for n in range(20):
                code = sender.publish(s.readings_topic("bp-b"), reading_payload(f"r{n}", BP))
                assert code == 0  # a subscriber matched: ingest
            await async_wait_until(lambda: count_rows(db_url) == 40, what="every reading stored")
        finally:
            thief.close()
            sender.close()
        assert thief.received == []
        assert service.source.stats.disconnects == 0


async def test_a_device_cannot_take_over_ingests_session(secured: Secured, db_url: str) -> None:
    """Finding 5: a device connecting with ingest's client id disconnected ingest."""
    s = secured.settings
    async with running_service(s) as service:
        for _ in range(4):
            intruder = Probe(secured.port, "bp-a", s.mqtt_client_id)
            assert intruder.connack == DENIED
            intruder.close()
        sender = Probe(secured.port, "bp-b", "bp-b")
        try:
            for n in range(5):
                assert sender.publish(s.readings_topic("bp-b"), reading_payload(f"t{n}", BP)) == 0
            await async_wait_until(lambda: count_rows(db_url) == 10, what="readings stored")
        finally:
            sender.close()
        assert service.source.stats.connects == 1
        assert service.source.stats.disconnects == 0


BP = [("systolic_bp", 120, "mm[Hg]"), ("diastolic_bp", 80, "mm[Hg]")]


@pytest.mark.parametrize(
    "device_id",
    ["homeward-ingest", "HOMEWARD-INGEST", "homeward-ingest-1", "homeward-x", "a/b", "+", "#", ""],
)
def test_service_account_names_and_topic_characters_are_refused_as_device_ids(
    db_url: str, monkeypatch: pytest.MonkeyPatch, device_id: str
) -> None:
    """Finding 6: `homeward device add homeward-ingest` was accepted, and broker-files
    then wrote a password for the ingest account."""
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="ACL", team="deal")
        conn.commit()
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    result = CliRunner().invoke(
        cli, ["device", "add", device_id, "--patient", NHS, "--password", "pw"]
    )
    assert result.exit_code != 0
    assert "device id" in result.output
    assert count_rows(db_url, "SELECT count(*) FROM devices") == 0


def test_broker_files_refuses_a_services_file_naming_a_device(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = tmp_path / "services"
    services.write_text(f"bp-a:{hash_password('x')}\n")
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    result = CliRunner().invoke(
        cli,
        [
            "device",
            "broker-files",
            "--out",
            str(tmp_path / "o"),
            "--service-passwords",
            str(services),
        ],
    )
    assert result.exit_code != 0
    assert "not a service account" in result.output
