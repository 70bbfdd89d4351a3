"""Several workers decide as one: the rule state is versioned per patient in PostgreSQL and
locked in each batch's transaction (alerts/store.py, docs/architecture.md "Several workers").

Each scenario is a patient with four devices (scales, oximeter, blood-pressure cuff,
thermometer) whose messages come in four batches; heart failure and post-discharge care
plans, so weight-change, threshold and NEWS2 rules all decide. Every order of the four
batches is run with every split of them between two workers (a patient per combination),
and the alerts must equal those of the split that gives every batch to one worker.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from alerts.store import RuleStage, StoredObservation
from commands.main import cli
from devices.payload import parse_reading_message
from devices.registry import add_device, add_patient
from homeward.config import Settings
from ingest.mqtt_source import Inbound
from ingest.writer import BatchStore, Item
from support import (
    Publisher,
    async_wait_until,
    count_rows,
    load_example_org,
    make_settings,
    purge_session,
    reading_payload,
    running_service,
)
from tools.bench.workload import synthetic_nhs_numbers

CONDITIONS = ["heart_failure", "post_discharge"]
DEVICES = ("sc", "ox", "bp", "th")
Message = tuple[str, str, list[tuple[str, float, str]], int]  # device, msg id, readings, minute


def batches() -> list[list[Message]]:
    """Four batches of a deteriorating patient: a 2.6 kg gain across two weighings, and
    vital signs whose NEWS2 climbs into the red band."""
    return [
        [
            ("sc", "w1", [("body_weight", 80.0, "kg")], 0),
            ("ox", "o1", [("spo2", 96, "%"), ("heart_rate", 80, "/min")], 1),
        ],
        [
            ("bp", "b1", [("systolic_bp", 118, "mm[Hg]"), ("diastolic_bp", 76, "mm[Hg]")], 2),
            ("th", "t1", [("body_temperature", 37.0, "Cel"), ("respiratory_rate", 18, "/min")], 3),
        ],
        [
            ("sc", "w2", [("body_weight", 82.6, "kg")], 4),
            ("ox", "o2", [("spo2", 93, "%"), ("heart_rate", 134, "/min")], 5),
        ],
        [
            ("th", "t2", [("body_temperature", 38.5, "Cel"), ("respiratory_rate", 24, "/min")], 6),
            ("bp", "b2", [("systolic_bp", 95, "mm[Hg]"), ("diastolic_bp", 60, "mm[Hg]")], 7),
        ],
    ]


READINGS = sum(len(m[2]) for batch in batches() for m in batch)  # a patient's, in all
ORDERS = list(itertools.permutations(range(4)))
SPLITS = list(itertools.product("AB", repeat=4))  # which worker takes the k-th batch
ONE_WORKER = ("A", "A", "A", "A")


def enrol(db_url: str, count: int) -> list[str]:
    """``count`` patients, each with the four devices ``<device>-<index>``."""
    numbers = synthetic_nhs_numbers(count)
    with psycopg.connect(db_url) as conn:
        load_example_org(conn)
        for i, nhs in enumerate(numbers):
            add_patient(conn, nhs_number=nhs, name=f"P{i}", team="deal", conditions=CONDITIONS)
            for device in DEVICES:
                add_device(conn, f"{device}-{i}", patient_nhs_number=nhs)
        conn.commit()
    return numbers


def item(settings: Settings, patient: int, message: Message, base: datetime) -> Item:
    device, msg, readings, minute = message
    topic = settings.readings_topic(f"{device}-{patient}")
    payload = reading_payload(
        f"{msg}-{patient}", readings, measured_at=base + timedelta(minutes=minute)
    )
    parsed = parse_reading_message(
        topic, payload, retained=False, now=datetime.now(UTC), topic_root=settings.topic_root
    )
    return Item(Inbound(0, 1, topic, payload, False, 1, time.time()), parsed)


def outcomes(db_url: str) -> dict[int, list[tuple[Any, ...]]]:
    """Per patient (by index in enrolment order): every alert as the rules left it."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT p.display_name, a.rule_id, a.priority, a.hit_count, a.first_value,"
            " a.latest_value, a.worst_value, a.first_measured_at - b.t0,"
            " a.latest_measured_at - b.t0, a.condition_cleared, a.message"
            " FROM alerts a JOIN patients p USING (patient_id)"
            " CROSS JOIN (SELECT min(time) AS t0 FROM readings) b"
            " ORDER BY p.display_name, a.rule_id"
        ).fetchall()
    out: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        out.setdefault(int(str(row[0])[1:]), []).append(tuple(row[1:]))
    return out


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url, "mqtt://127.0.0.1:1")


async def test_every_order_and_every_split_between_two_workers_decides_as_one(
    settings: Settings, db_url: str
) -> None:
    combos = list(itertools.product(range(len(ORDERS)), range(len(SPLITS))))
    enrol(db_url, len(combos))
    workers = {w: BatchStore(settings.dsn, stage=RuleStage()) for w in "AB"}
    base = datetime.now(UTC) - timedelta(minutes=30)
    plan = batches()
    try:
        for step in range(4):  # each step: worker A's batch commits, then worker B's
            for w, store in workers.items():
                items = [
                    item(settings, patient, message, base)
                    for patient, (order, split) in enumerate(combos)
                    if SPLITS[split][step] == w
                    for message in plan[ORDERS[order][step]]
                ]
                if items:
                    result = await store.write(items)
                    assert len(result.stored) == result.offered
    finally:
        for store in workers.values():
            await store.close()
    readings = READINGS
    assert count_rows(db_url) == readings * len(combos)
    assert count_rows(
        db_url, "SELECT count(DISTINCT (device_id, msg_id, metric)) FROM readings"
    ) == (readings * len(combos))
    found = outcomes(db_url)
    one = SPLITS.index(ONE_WORKER)
    for patient, (order, split) in enumerate(combos):
        reference = found[combos.index((order, one))]
        assert found[patient] == reference, (ORDERS[order], SPLITS[split])
    in_time_order = found[combos.index((ORDERS.index((0, 1, 2, 3)), one))]
    rules = {row[0] for row in in_time_order}
    assert {"change:body_weight:3d", "change:body_weight:1d", "news2"} <= rules
    assert "threshold:heart_rate:high" in rules


class HeldStage(RuleStage):
    """The real rule stage, holding its batch's transaction open until released."""

    def __init__(self) -> None:
        super().__init__()
        self.evaluated = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, cur: Any, stored: Sequence[StoredObservation], now: datetime) -> None:
        await super().__call__(cur, stored, now)
        self.evaluated.set()
        await self.release.wait()


def lock_waiters(db_url: str) -> int:
    return count_rows(
        db_url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock'",
    )


@pytest.mark.parametrize("held_first", [(2, 3), (3, 2)])
async def test_a_worker_waits_for_the_other_s_batch_and_decides_on_its_readings(
    settings: Settings, db_url: str, held_first: tuple[int, int]
) -> None:
    """Two workers' batches for one patient at the same time: the second waits on the
    patient's rule state until the first commits, then reloads the window with its
    readings — the 2.6 kg gain split across them is seen, as one worker sees it."""
    enrol(db_url, 2)  # patient 0: the two workers; patient 1: one worker, in the same order
    held = HeldStage()
    holder = BatchStore(settings.dsn, stage=held)
    other = BatchStore(settings.dsn, stage=RuleStage())
    one = BatchStore(settings.dsn, stage=RuleStage())
    base = datetime.now(UTC) - timedelta(minutes=30)
    plan = batches()
    mine, theirs = (plan[k] for k in held_first)
    try:
        held.release.set()
        await holder.write([item(settings, 0, m, base) for m in plan[0]])
        await other.write([item(settings, 0, m, base) for m in plan[1]])
        held.release.clear()
        held.evaluated.clear()
        writing = asyncio.create_task(holder.write([item(settings, 0, m, base) for m in mine]))
        await held.evaluated.wait()
        waiting = asyncio.create_task(other.write([item(settings, 0, m, base) for m in theirs]))
        await async_wait_until(lambda: lock_waiters(db_url) == 1, what="the second batch waiting")
        assert not waiting.done()
        held.release.set()
        await writing
        await waiting
        for batch in (plan[0], plan[1], mine, theirs):
            await one.write([item(settings, 1, m, base) for m in batch])
    finally:
        held.release.set()
        for store in (holder, other, one):
            await store.close()
    found = outcomes(db_url)
    assert found[0] == found[1]
    assert {"change:body_weight:3d", "news2"} <= {row[0] for row in found[0]}


# ---- the running service: two workers on one share group ---------------------------------


@pytest.fixture
def shared(db_url: str, broker_url: str) -> Iterator[tuple[Settings, Settings, Settings]]:
    """One worker's settings, then two workers sharing one subscription (same topic root
    and share group, their own client ids)."""
    alone = make_settings(db_url, broker_url)
    a = make_settings(db_url, broker_url)
    b = make_settings(
        db_url,
        broker_url,
        topic_root=a.topic_root,
        mqtt_share_group=a.mqtt_share_group,
        mqtt_client_id=a.mqtt_client_id + "-b",
    )
    yield alone, a, b
    for s in (alone, a, b):
        purge_session(s)


PATIENTS = 4


async def publish_steps(
    db_url: str, pub: Publisher, settings: Settings, first: int, base: datetime
) -> None:
    """Each step publishes one message of every patient, then waits for all of them
    stored: each patient's messages commit in order, whichever worker takes them (two
    messages of a patient in flight at once may commit in either order, and a reading
    committed after a newer one is evaluated as out of order, by one worker as by two)."""
    messages = [m for batch in batches() for m in batch]
    expected = 0
    for step, (device, msg, readings, minute) in enumerate(messages):
        for patient in range(first, first + PATIENTS):
            pub.publish(
                settings.readings_topic(f"{device}-{patient}"),
                reading_payload(
                    f"{msg}-{patient}", readings, measured_at=base + timedelta(minutes=minute)
                ),
            )
        expected += PATIENTS * len(readings)

        def stored(e: int = expected) -> bool:
            return (
                count_rows(
                    db_url,
                    "SELECT count(*) FROM readings r JOIN patients p USING (patient_id)"
                    " WHERE substr(p.display_name, 2)::int BETWEEN %s AND %s",
                    first,
                    first + PATIENTS - 1,
                )
                == e
            )

        await async_wait_until(stored, what=f"step {step} stored")


async def test_two_running_workers_on_one_share_group_raise_the_alerts_of_one(
    shared: tuple[Settings, Settings, Settings], db_url: str, broker_url: str
) -> None:
    alone, a, b = shared
    enrol(db_url, 2 * PATIENTS)  # 0–3: one worker; 4–7: two workers
    base = datetime.now(UTC) - timedelta(minutes=30)
    pub = Publisher(broker_url)
    try:
        async with running_service(alone):
            await publish_steps(db_url, pub, alone, 0, base)
        async with running_service(a) as first, running_service(b) as second:
            await publish_steps(db_url, pub, a, PATIENTS, base)
            took = (first.pipeline.stats.stored, second.pipeline.stats.stored)
    finally:
        pub.close()
    assert all(n > 0 for n in took), took  # both workers took part
    found = outcomes(db_url)
    for patient in range(PATIENTS):
        assert found[patient + PATIENTS] == found[patient], patient
    assert {"change:body_weight:3d", "news2"} <= {row[0] for row in found[0]}
    total = 2 * PATIENTS * READINGS
    assert count_rows(db_url) == total
    assert (
        count_rows(db_url, "SELECT count(DISTINCT (device_id, msg_id, metric)) FROM readings")
        == total
    )


# ---- enrolment and conditions while the service runs -------------------------------------


def weights(
    settings: Settings, device: str, values: Sequence[tuple[float, float]]
) -> list[tuple[str, bytes]]:
    now = datetime.now(UTC)
    return [
        (
            settings.readings_topic(device),
            reading_payload(
                f"{device}-w{i}", [("body_weight", kg, "kg")], measured_at=now - timedelta(hours=h)
            ),
        )
        for i, (h, kg) in enumerate(values)
    ]


def alert_rows(db_url: str, nhs: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT a.rule_id, a.hit_count, a.first_value, a.latest_value FROM alerts a"
            " JOIN patients p USING (patient_id) WHERE p.nhs_number = %s ORDER BY a.rule_id",
            (nhs,),
        ).fetchall()


async def test_a_patient_enrolled_while_running_is_evaluated_like_one_enrolled_before(
    db_url: str, broker_url: str
) -> None:
    """Three weights a scale buffered arrive together: the patient enrolled while the
    service runs gets exactly the alerts of the patient enrolled before it started (their
    first batch is not loaded as history and then evaluated again)."""
    before, during = synthetic_nhs_numbers(2)
    with psycopg.connect(db_url) as conn:
        load_example_org(conn)
        add_patient(
            conn, nhs_number=before, name="Before", team="deal", conditions=["heart_failure"]
        )
        add_device(conn, "sc-before", patient_nhs_number=before)
        conn.commit()
    settings = make_settings(db_url, broker_url)
    buffered = [(5.0, 80.0), (3.0, 82.0), (1.0, 82.6)]  # hours ago, kg: two gains
    pub = Publisher(broker_url)
    try:
        async with running_service(settings) as service:
            assert service.status()["rules"]["warmed_patients"] == 1
            with psycopg.connect(db_url) as conn:
                add_patient(
                    conn,
                    nhs_number=during,
                    name="During",
                    team="deal",
                    conditions=["heart_failure"],
                )
                add_device(conn, "sc-during", patient_nhs_number=during)
                conn.commit()
            pub.publish_many(weights(settings, "sc-before", buffered))
            pub.publish_many(weights(settings, "sc-during", buffered))
            await async_wait_until(lambda: count_rows(db_url) == 6, what="six weights stored")
    finally:
        pub.close()
        purge_session(settings)
    found = alert_rows(db_url, before)
    assert {"change:body_weight:3d", "change:body_weight:1d"} <= {r[0] for r in found}
    assert alert_rows(db_url, during) == found


async def test_a_condition_added_while_running_takes_effect_at_the_next_reading(
    db_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (nhs,) = synthetic_nhs_numbers(1)
    with psycopg.connect(db_url) as conn:
        load_example_org(conn)
        add_patient(conn, nhs_number=nhs, name="Later HF", team="deal", conditions=["hypertension"])
        add_device(conn, "sc-1", patient_nhs_number=nhs)
        conn.commit()
    settings = make_settings(db_url, broker_url)
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    pub = Publisher(broker_url)
    first, second = weights(settings, "sc-1", [(2.0, 80.0), (1.0, 82.6)])
    try:
        async with running_service(settings):
            pub.publish(*first)
            await async_wait_until(lambda: count_rows(db_url) == 1, what="first weight")
            added = CliRunner().invoke(
                cli,
                [
                    "patient",
                    "add",
                    "--nhs-number",
                    nhs,
                    "--name",
                    "Later HF",
                    "--condition",
                    "heart_failure",
                ],
            )
            assert added.exit_code == 0, added.output
            pub.publish(*second)
            await async_wait_until(lambda: count_rows(db_url) == 2, what="second weight")
    finally:
        pub.close()
        purge_session(settings)
    assert {"change:body_weight:3d", "change:body_weight:1d"} <= {
        r[0] for r in alert_rows(db_url, nhs)
    }
