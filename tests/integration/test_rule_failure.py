"""A rule that raises is visible and loses nothing (hazard H13): through the running
service, a patient whose NEWS2 evaluation raises has their readings stored and kept for
re-evaluation, a technical alert, and /health degraded naming the rules; the other
patient of the same batch is decided as usual; once the rule works again, the patient's
next reading re-evaluates the kept ones (the alert they should have raised is raised)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg
import pytest

import alerts.engine
import alerts.store
from alerts.store import RULE_FAILURE
from devices.registry import add_device, add_patient
from homeward.config import Settings
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

BROKEN, WELL = synthetic_nhs_numbers(2)


@pytest.fixture
def settings(db_url: str, broker_url: str) -> Iterator[Settings]:
    with psycopg.connect(db_url) as conn:
        load_example_org(conn)
        for nhs, device in ((BROKEN, "ox-broken"), (WELL, "ox-well")):
            add_patient(conn, nhs_number=nhs, name=nhs, team="deal", conditions=["post_discharge"])
            add_device(conn, device, patient_nhs_number=nhs)
        conn.commit()
    s = make_settings(db_url, broker_url)
    yield s
    purge_session(s)


def alerts_of(db_url: str, nhs: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT a.rule_id, a.priority, a.condition_cleared, a.latest_value, a.team_id"
            " FROM alerts a JOIN patients p USING (patient_id) WHERE p.nhs_number = %s",
            (nhs,),
        ).fetchall()
    return {str(r[0]): tuple(r[1:]) for r in rows}


async def health(service: Any) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{service.http_port}/health") as response,
    ):
        return response.status, await response.json()


def oximetry(msg: str, spo2: float, at: datetime) -> bytes:
    return reading_payload(msg, [("spo2", spo2, "%"), ("heart_rate", 80, "/min")], measured_at=at)


async def test_a_rule_that_raises_keeps_the_readings_alerts_and_degrades_health(
    settings: Settings, db_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT patient_id FROM patients WHERE nhs_number = %s", (BROKEN,))
        broken_id = row.fetchone()[0]  # type: ignore[index]
    real = alerts.engine._news2_hit

    def faulty(state: Any, *args: Any) -> Any:
        if state.patient_id == broken_id:
            raise ZeroDivisionError("a bug in a rule")
        return real(state, *args)

    monkeypatch.setattr(alerts.engine, "_news2_hit", faulty)
    at = datetime.now(UTC) - timedelta(minutes=10)
    pub = Publisher(broker_url)
    try:
        async with running_service(settings) as service:
            pub.publish_many(
                [
                    (settings.readings_topic("ox-broken"), oximetry("b1", 90, at)),
                    (settings.readings_topic("ox-well"), oximetry("w1", 90, at)),
                ]
            )
            await async_wait_until(lambda: count_rows(db_url) == 4, what="readings stored")
            # the other patient: decided as usual
            assert alerts_of(db_url, WELL)["threshold:spo2:low"][0] == "red"
            # the broken one: no clinical alert, a technical one for its team, readings kept
            found = alerts_of(db_url, BROKEN)
            assert set(found) == {RULE_FAILURE}
            assert found[RULE_FAILURE][0] == "technical"
            assert found[RULE_FAILURE][3] == "deal"
            assert count_rows(db_url, "SELECT count(*) FROM rule_backlog") == 2
            status, body = await health(service)
            assert status == 503
            assert any(p.startswith("rules: 2 readings of 1 patients") for p in body["problems"])
            assert "ZeroDivisionError" in " ".join(body["problems"])
            assert body["rules"]["failed_patients"] == 1

            monkeypatch.setattr(alerts.engine, "_news2_hit", real)  # the rule fixed
            pub.publish(
                settings.readings_topic("ox-broken"),
                oximetry("b2", 95, at + timedelta(minutes=1)),
            )
            await async_wait_until(lambda: count_rows(db_url) == 6, what="next reading")
            found = alerts_of(db_url, BROKEN)
            assert found["threshold:spo2:low"][:1] == ("red",)  # from the kept reading
            assert found["threshold:spo2:low"][2] == 90
            assert found[RULE_FAILURE][1] is True  # condition cleared; a person resolves it
            assert count_rows(db_url, "SELECT count(*) FROM rule_backlog") == 0
            status, body = await health(service)
            assert status == 200, body["problems"]
    finally:
        pub.close()


async def test_a_rule_stage_that_fails_whole_keeps_every_reading_of_the_batch(
    settings: Settings, db_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stage itself fails (not one patient's rule): its savepoint is rolled back and
    every reading of the batch is kept, each patient alerted, in the same transaction."""
    real = alerts.store.write_decisions
    calls = {"n": 0}

    async def failing_once(cur: Any, decisions: Any, now: datetime) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the alert writer broke")
        return await real(cur, decisions, now)

    monkeypatch.setattr(alerts.store, "write_decisions", failing_once)
    at = datetime.now(UTC) - timedelta(minutes=10)
    pub = Publisher(broker_url)
    try:
        async with running_service(settings) as service:
            pub.publish_many(
                [
                    (settings.readings_topic("ox-broken"), oximetry("b1", 90, at)),
                    (settings.readings_topic("ox-well"), oximetry("w1", 90, at)),
                ]
            )
            await async_wait_until(lambda: count_rows(db_url) == 4, what="readings stored")
            await async_wait_until(
                lambda: (
                    count_rows(db_url, "SELECT count(*) FROM rule_backlog") == 4
                    or count_rows(
                        db_url, "SELECT count(*) FROM alerts WHERE rule_id <> %s", RULE_FAILURE
                    )
                    > 0
                ),
                what="the first batch decided",
            )
            kept = count_rows(db_url, "SELECT count(DISTINCT patient_id) FROM rule_backlog")
            assert kept >= 1  # the first batch's patients (both, unless split in two batches)
            assert service.store.stage_errors == 1
            assert (
                count_rows(db_url, "SELECT count(*) FROM alerts WHERE rule_id = %s", RULE_FAILURE)
                == kept
            )
            status, _ = await health(service)
            assert status == 503
            for device in ("ox-broken", "ox-well"):
                pub.publish(
                    settings.readings_topic(device),
                    oximetry(f"{device}-2", 95, at + timedelta(minutes=1)),
                )
            await async_wait_until(lambda: count_rows(db_url) == 8, what="next readings")
            await async_wait_until(
                lambda: count_rows(db_url, "SELECT count(*) FROM rule_backlog") == 0,
                what="kept readings re-evaluated",
            )
            for nhs in (BROKEN, WELL):
                assert alerts_of(db_url, nhs)["threshold:spo2:low"][2] == 90
            status, body = await health(service)
            assert status == 200, body["problems"]
    finally:
        pub.close()
