"""COPD through the running service (issue 14, item 4): until a clinician records the
patient's SpO2 target and scale the service asks for it (no amber NEWS2 at every reading
inside 88–92 %); recorded with ``homeward rules set`` (who and why kept), NEWS2 scale 2 and
the target's low limit are used from the next reading."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
from click.testing import CliRunner

from commands.main import cli
from devices.registry import add_device, add_patient
from homeward.config import Settings
from support import Publisher, async_wait_until, make_settings, purge_session, running_service

NHS = "9434765919"


@pytest.fixture
def settings(db_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="Copd", team="deal", conditions=["copd"])
        add_device(conn, "ox-1", patient_nhs_number=NHS, kind="pulse_oximeter")
        conn.commit()
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    s = make_settings(db_url, broker_url)
    yield s
    purge_session(s)


def oximetry(msg_id: str, spo2: float, pulse: float, at: datetime) -> bytes:
    return orjson.dumps(
        {
            "msg_id": msg_id,
            "measured_at": at.isoformat(),
            "readings": [
                {"metric": "spo2", "value": spo2, "unit": "%"},
                {"metric": "heart_rate", "value": pulse, "unit": "/min"},
            ],
            "context": {"on_oxygen": False},
        }
    )


def alerts(db_url: str) -> dict[str, tuple[str, int]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT rule_id, priority, hit_count FROM alerts").fetchall()
    return {str(r): (str(p), int(n)) for r, p, n in rows}


async def test_copd_asks_for_its_target_then_scores_on_scale_2(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    runner = CliRunner()
    pub = Publisher(broker_url)
    topic = settings.readings_topic("ox-1")
    now = datetime.now(UTC)
    try:
        async with running_service(settings) as service:
            for i, value in enumerate((90, 89, 91)):  # inside the patient's own 88–92 %
                at = now - timedelta(hours=3 - i)
                pub.publish(topic, oximetry(f"a{i}", value, 80, at))
            await async_wait_until(lambda: service.pipeline.stats.stored == 6, what="stored")
            await async_wait_until(lambda: "spo2_target" in alerts(db_url), what="ask")
            assert alerts(db_url) == {"spo2_target": ("technical", 3)}  # no amber NEWS2
            changed = runner.invoke(
                cli,
                [
                    "rules",
                    "set",
                    NHS,
                    "spo2_target",
                    "low=88",
                    "high=92",
                    "scale=2",
                    "--by",
                    "dr.jones",
                    "--reason",
                    "hypercapnic respiratory failure on blood gases",
                ],
            )
            assert changed.exit_code == 0, changed.stderr
            pub.publish(topic, oximetry("b1", 90, 80, now - timedelta(minutes=30)))
            pub.publish(topic, oximetry("b2", 86, 80, now))  # below the target: red
            await async_wait_until(
                lambda: "threshold:spo2:low" in alerts(db_url), what="below target"
            )
    finally:
        pub.close()
    found = alerts(db_url)
    assert found["threshold:spo2:low"][0] == "red"
    assert found["spo2_target"] == ("technical", 3)  # asked no more once recorded
    assert "news2" not in found  # scale 2: 86 % scores 1
    shown = orjson.loads(runner.invoke(cli, ["rules", "show", NHS, "--json"]).stdout)
    rules = {row["rule"]: row for row in shown}
    assert rules["spo2_target"]["settings"] == {"low": 88, "high": 92, "scale": 2}
    assert rules["spo2_target"]["decided"]["by"] == "dr.jones"
    assert "blood gases" in rules["spo2_target"]["decided"]["reason"]
    assert rules["news2"]["settings"]["spo2_scale"] == 2
    assert rules["news2"]["origin"] == "spo2_target"
    assert rules["threshold:spo2:low"]["settings"]["limit"] == 88
