"""A stopped or crashed worker strands none of the group's readings (issue 22).

Two ``homeward run`` processes share one group on a Mosquitto of their own, started with
the project's settings (persistence, queue limits). Mosquitto keeps an offline session in
a shared subscription and queues its share for it; these tests prove that the readings
published after a graceful stop, after a SIGKILL, and while every worker is stopped are
all stored, once, within the bound of docs/operations.md.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest

from devices.registry import add_device, add_patient
from homeward.config import Settings
from ingest.membership import stranded_after_s
from service.wiring import HomewardService
from support import (
    Publisher,
    async_wait_until,
    count_rows,
    make_settings,
    purge_session,
    reading_payload,
    running_service,
    service_process,
    wait_until,
)
from tools.embedded.mosquitto import EmbeddedMosquitto

pytestmark = pytest.mark.slow

NHS = "9434765919"
DEVICES = [f"sg-{i}" for i in range(4)]
FAST = {"HOMEWARD_MQTT_HEARTBEAT_S": "1", "HOMEWARD_MQTT_PEER_TIMEOUT_S": "4"}


def seed(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Share Group", team="deal")
        for device in DEVICES:
            add_device(conn, device, patient_nhs_number=NHS)
        conn.commit()


def messages(settings: Settings, tag: str, count: int) -> Iterator[tuple[str, bytes]]:
    for i in range(count):
        yield (
            settings.readings_topic(DEVICES[i % len(DEVICES)]),
            reading_payload(f"{tag}-{i}", [("heart_rate", 60 + i % 30, "/min")]),
        )


def member_state(db_url: str, client_id: str) -> tuple[str, str | None] | None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT state, reclaimed_by FROM ingest_members WHERE client_id = %s", (client_id,)
        ).fetchone()
    return (str(row[0]), row[1]) if row else None


class Workers:
    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> Path:
        return self.tmp_path / f"{name}.log"

    def start(self, name: str) -> None:
        client_id = f"{self.settings.mqtt_client_id}-{name}"
        log = self.log(name)
        before = log.read_text().count("MQTT connected") if log.exists() else 0
        self.procs[name] = service_process(self.settings, log, client_id=client_id, **FAST)
        wait_until(
            lambda: log.read_text().count("MQTT connected") > before, what=f"{name} connected"
        )
        wait_until(
            lambda: (member_state(self.settings.dsn, client_id) or ("",))[0] == "active",
            what=f"{name} a member",
        )
        time.sleep(0.5)  # its SUBACK: the broker counts it in the group from now on

    def client_id(self, name: str) -> str:
        return f"{self.settings.mqtt_client_id}-{name}"

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        assert proc.wait(60) in (0, -signal.SIGKILL), self.log(name).read_text()[-3000:]

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture
def workers(db_url: str, own_broker: EmbeddedMosquitto, tmp_path: Path) -> Iterator[Workers]:
    seed(db_url)
    group = Workers(make_settings(db_url, own_broker.url), tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


def publish(settings: Settings, tag: str, count: int) -> None:
    publisher = Publisher(settings.mqtt_url or "")
    try:
        publisher.publish_many(messages(settings, tag, count), window=50)
    finally:
        publisher.close()


def assert_stored_once(db_url: str, tag: str, count: int) -> None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT msg_id) FROM readings WHERE msg_id LIKE %s",
            (f"{tag}-%",),
        ).fetchone()
    assert row == (count, count)


def test_a_graceful_stop_hands_its_share_to_the_running_worker(workers: Workers) -> None:
    s = workers.settings
    workers.start("a")
    workers.start("b")
    workers.stop("b")
    assert member_state(s.dsn, workers.client_id("b")) == ("left", None)
    began = time.monotonic()
    publish(s, "g", 200)
    # Stored by the other worker right away: nothing waits for the reclaim timeout.
    wait_until(
        lambda: count_rows(s.dsn, "SELECT count(*) FROM readings WHERE msg_id LIKE 'g-%'") == 200,
        timeout_s=s.mqtt_peer_timeout_s,
        what="every reading by the running worker",
    )
    assert time.monotonic() - began < 20
    assert_stored_once(s.dsn, "g", 200)


def test_a_killed_worker_s_share_is_reclaimed_within_the_bound(workers: Workers) -> None:
    s = workers.settings
    workers.start("a")
    workers.start("b")
    workers.stop("b", signal.SIGKILL)
    began = time.monotonic()
    publish(s, "k", 200)
    bound = stranded_after_s(s.model_copy(update={"mqtt_heartbeat_s": 1, "mqtt_peer_timeout_s": 4}))
    wait_until(
        lambda: count_rows(s.dsn, "SELECT count(*) FROM readings WHERE msg_id LIKE 'k-%'") == 200,
        timeout_s=bound,
        what="every reading, the killed worker's share reclaimed",
    )
    assert time.monotonic() - began < bound
    wait_until(
        lambda: member_state(s.dsn, workers.client_id("b")) == ("left", workers.client_id("a")),
        what="the killed worker's session reclaimed and out of the group",
    )
    assert_stored_once(s.dsn, "k", 200)
    # After the reclaim nothing more goes to the dead session.
    publish(s, "k2", 100)
    wait_until(
        lambda: count_rows(s.dsn, "SELECT count(*) FROM readings WHERE msg_id LIKE 'k2-%'") == 100,
        timeout_s=15,
        what="readings after the reclaim, without waiting",
    )


def test_with_every_worker_stopped_the_broker_keeps_every_reading(workers: Workers) -> None:
    s = workers.settings
    workers.start("a")
    workers.start("b")
    workers.stop("a")
    workers.stop("b")
    assert member_state(s.dsn, workers.client_id("a"))[0] == "left"  # type: ignore[index]
    assert member_state(s.dsn, workers.client_id("b"))[0] == "stopped"  # type: ignore[index]
    publish(s, "z", 200)  # nobody runs: the last member's session keeps them
    workers.start("a")
    wait_until(
        lambda: count_rows(s.dsn, "SELECT count(*) FROM readings WHERE msg_id LIKE 'z-%'") == 200,
        timeout_s=30,
        what="every reading after one worker starts",
    )
    wait_until(
        lambda: member_state(s.dsn, workers.client_id("b")) == ("left", workers.client_id("a")),
        what="the stopped worker's session reclaimed",
    )
    publish(s, "z2", 100)  # and nothing more waits on the stopped worker's session
    wait_until(
        lambda: count_rows(s.dsn, "SELECT count(*) FROM readings WHERE msg_id LIKE 'z2-%'") == 100,
        timeout_s=15,
        what="later readings",
    )
    assert_stored_once(s.dsn, "z", 200)
    assert_stored_once(s.dsn, "z2", 100)


async def test_a_share_stranded_beyond_the_bound_is_a_technical_alert_and_a_503(
    db_url: str, broker_url: str
) -> None:
    """A member that is neither running nor reclaimable (here: claimed by a reclaimer
    that never finishes) raises a service technical alert and makes /health 503 until
    it is out of the group."""
    settings = make_settings(db_url, broker_url, mqtt_heartbeat_s=0.2, mqtt_peer_timeout_s=1)
    ghost = f"{settings.mqtt_client_id}-ghost"
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO ingest_members (client_id, share_group, state, heartbeat_at,"
            " claimed_by, claimed_at) VALUES (%s, %s, 'active', now() - interval '1 hour',"
            " 'stuck-reclaimer', 'infinity')",
            (ghost, settings.mqtt_share_group),
        )
        conn.commit()
    open_alerts = "SELECT count(*) FROM service_alerts WHERE kind = 'share_stranded'"
    try:
        async with running_service(settings) as service, aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{service.http_port}/health"
            await async_wait_until(
                lambda: count_rows(db_url, open_alerts + " AND state = 'open'") == 1,
                what="the stranded alert",
            )
            async with http.get(url) as response:
                assert response.status == 503
                body = await response.json()
            assert [s["client_id"] for s in body["share_group"]["stranded"]] == [ghost]
            metrics = f"http://127.0.0.1:{service.http_port}/metrics"
            async with http.get(metrics) as response:
                assert "homeward_share_stranded_workers 1.0" in (await response.text())
            with psycopg.connect(db_url) as conn:
                conn.execute(
                    "UPDATE ingest_members SET state = 'left' WHERE client_id = %s", (ghost,)
                )
                conn.commit()
            await async_wait_until(
                lambda: count_rows(db_url, open_alerts + " AND state = 'resolved'") == 1,
                what="the alert resolved",
            )
            await async_wait_until(lambda: not service.membership.stats.stranded, what="cleared")  # type: ignore[union-attr]
            async with http.get(url) as response:
                assert response.status == 200
            async with http.get(metrics) as response:
                assert "homeward_share_stranded_workers 0.0" in (await response.text())
    finally:
        purge_session(settings)


async def test_two_workers_stopping_at_once_never_both_leave(db_url: str, broker_url: str) -> None:
    """The leave decision is taken under the group's row locks: of two workers stopped at
    the same moment one leaves and the other stays a member, so the broker keeps the
    group's readings for the next start."""
    seed(db_url)
    a = make_settings(db_url, broker_url, mqtt_heartbeat_s=0.5, mqtt_peer_timeout_s=5)
    b = a.model_copy(update={"mqtt_client_id": f"{a.mqtt_client_id}-b"})
    services = [HomewardService(a), HomewardService(b)]
    stops = [asyncio.Event(), asyncio.Event()]
    readies = [asyncio.Event(), asyncio.Event()]
    tasks = [
        asyncio.create_task(svc.run(stop, ready=ready))
        for svc, stop, ready in zip(services, stops, readies, strict=True)
    ]
    try:
        for ready in readies:
            await asyncio.wait_for(ready.wait(), 60)
        await async_wait_until(
            lambda: all(s.source.stats.subscribed for s in services), what="both subscribed"
        )
        await async_wait_until(
            lambda: all(
                member_state(db_url, c) == ("active", None)
                for c in (a.mqtt_client_id, b.mqtt_client_id)
            ),
            what="both members",
        )
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks)
        states = sorted(member_state(db_url, c)[0] for c in (a.mqtt_client_id, b.mqtt_client_id))  # type: ignore[index]
        assert states == ["left", "stopped"]
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        purge_session(a)
        purge_session(b)
