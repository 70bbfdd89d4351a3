"""End to end: readings published over MQTT → rules → alerts in PostgreSQL, and a
clinician's change used from the next reading on."""

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
from support import (
    Publisher,
    async_wait_until,
    count_rows,
    make_settings,
    purge_session,
    reading_payload,
    running_service,
    unique,
)

NHS = "9434765919"


@pytest.fixture
def settings(db_url: str, broker_url: str) -> Iterator[Settings]:
    with psycopg.connect(db_url) as conn:
        add_patient(
            conn,
            nhs_number=NHS,
            name="Deteriorating Patient",
            team="deal",
            conditions=["hypertension", "heart_failure"],
        )
        add_device(conn, "bp-1", patient_nhs_number=NHS)
        add_device(conn, "sc-1", patient_nhs_number=NHS)
        conn.commit()
    s = make_settings(db_url, broker_url)
    yield s
    purge_session(s)


def alerts(db_url: str) -> dict[str, tuple[object, ...]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT rule_id, priority, state, hit_count, latest_value, worst_value, team_id,"
            " condition_cleared FROM alerts ORDER BY alert_id"
        ).fetchall()
    return {str(r[0]): tuple(r[1:]) for r in rows}


def bp(msg_id: str, systolic: float, at: datetime | None = None) -> bytes:
    return reading_payload(
        msg_id,
        [("systolic_bp", systolic, "mm[Hg]"), ("diastolic_bp", 90, "mm[Hg]")],
        measured_at=at,
    )


async def test_severe_hypertension_raises_one_red_alert_that_latches(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    pub = Publisher(broker_url)
    topic = settings.readings_topic("bp-1")
    stream = psycopg.connect(db_url, autocommit=True)  # the team's live stream
    stream.execute("LISTEN homeward_team_deal")
    try:
        async with running_service(settings):
            pub.publish(topic, bp("b1", 138))
            severe = bp("b2", 186)
            pub.publish(topic, severe)
            pub.publish(topic, severe)  # the same message redelivered: no second hit
            pub.publish(topic, bp("b3", 192))
            await async_wait_until(
                lambda: (
                    "threshold:systolic_bp:severe" in alerts(db_url)
                    and alerts(db_url)["threshold:systolic_bp:severe"][2] == 2
                ),
                what="severe alert updated",
            )
            pub.publish(topic, bp("b4", 172))  # inside the hysteresis band (≥ 170): held
            pub.publish(topic, bp("b5", 128))  # back to normal: condition cleared, still open
            await async_wait_until(
                lambda: alerts(db_url)["threshold:systolic_bp:severe"][6] is True,
                what="condition cleared",
            )
        notified = [orjson.loads(n.payload) for n in stream.notifies(timeout=1)]
    finally:
        pub.close()
        stream.close()
    found = alerts(db_url)
    assert found["threshold:systolic_bp:severe"] == ("red", "open", 2, 192.0, 192.0, "deal", True)
    with psycopg.connect(db_url) as conn:
        severe_id = conn.execute(
            "SELECT alert_id FROM alerts WHERE rule_id = 'threshold:systolic_bp:severe'"
        ).fetchone()
    assert severe_id is not None
    news = [n for n in notified if n["alert_id"] == severe_id[0]]
    assert news[0]["event"] == "raised"
    assert news[0]["priority"] == "red"
    assert datetime.fromisoformat(news[0]["measured_at"]) <= datetime.now(UTC)
    assert found["threshold:systolic_bp:stage2"][0] == "amber"
    assert count_rows(db_url, "SELECT count(*) FROM alerts") == 2
    with psycopg.connect(db_url) as conn:
        events = conn.execute(
            "SELECT e.kind, (e.data->>'hits')::int FROM alert_events e JOIN alerts a"
            " USING (alert_id) WHERE a.rule_id = 'threshold:systolic_bp:severe'"
            " ORDER BY event_id"
        ).fetchall()
    # Hits of one batch are merged into one event; two hits in all, however batched.
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "raised"
    assert kinds[-1] == "condition_cleared"
    assert set(kinds[1:-1]) <= {"updated"}
    assert sum(hits or 0 for _, hits in events) == 2


async def test_heart_failure_weight_gain_and_late_data(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    pub = Publisher(broker_url)
    topic = settings.readings_topic("sc-1")
    now = datetime.now(UTC)
    try:
        async with running_service(settings) as service:
            # A buffered upload from last week, arriving now: history, never an alert.
            for day, weight in ((9, 80.0), (8, 80.1), (7, 83.5)):
                pub.publish(
                    topic,
                    reading_payload(
                        f"old-{day}",
                        [("body_weight", weight, "kg")],
                        measured_at=now - timedelta(days=day),
                    ),
                )
            await async_wait_until(lambda: service.pipeline.stats.stored == 3, what="history")
            assert alerts(db_url) == {}
            assert count_rows(db_url, "SELECT count(*) FROM late_reviews") >= 1
            # Current readings: +2.4 kg within three days.
            for hours, weight in ((50, 80.2), (20, 81.0), (0, 82.6)):
                pub.publish(
                    topic,
                    reading_payload(
                        f"w-{hours}",
                        [("body_weight", weight, "kg")],
                        measured_at=now - timedelta(hours=hours),
                    ),
                )
            await async_wait_until(
                lambda: "change:body_weight:3d" in alerts(db_url), what="weight gain alert"
            )
    finally:
        pub.close()
    found = alerts(db_url)
    assert found["change:body_weight:3d"][:2] == ("amber", "open")
    assert found["change:body_weight:1d"][:2] == ("amber", "open")  # +1.6 kg in 24 h


async def test_a_clinician_override_applies_from_the_next_reading(
    settings: Settings, db_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    runner = CliRunner()
    pub = Publisher(broker_url)
    topic = settings.readings_topic("bp-1")
    try:
        async with running_service(settings) as service:
            # Warmed before subscribing: the patient's rules are in memory before any reading.
            assert service.status()["rules"]["warmed_patients"] == 1
            assert service.rules is not None
            assert len(service.rules.engine.patients) == 1
            pub.publish(topic, bp("c1", 172))
            await async_wait_until(lambda: service.pipeline.stats.stored == 2, what="stored")
            assert "threshold:systolic_bp:severe" not in alerts(db_url)
            changed = runner.invoke(
                cli,
                [
                    "rules",
                    "set",
                    NHS,
                    "threshold:systolic_bp:severe",
                    "limit=170",
                    "hysteresis=5",
                    "--by",
                    "dr.jones",
                    "--reason",
                    "post-stroke: tighter control",
                ],
            )
            assert changed.exit_code == 0, changed.output
            pub.publish(topic, bp("c2", 172))
            await async_wait_until(
                lambda: "threshold:systolic_bp:severe" in alerts(db_url),
                what="alert with the new limit",
            )
    finally:
        pub.close()
    shown = runner.invoke(cli, ["rules", "show", NHS, "--json"])
    severe = next(
        r for r in orjson.loads(shown.stdout) if r["rule"] == "threshold:systolic_bp:severe"
    )
    assert severe["origin"] == "override"
    assert severe["settings"]["limit"] == 170
    assert severe["overridden"] == ["hysteresis", "limit"]
    history = orjson.loads(runner.invoke(cli, ["rules", "history", NHS, "--json"]).stdout)
    assert [(h["version"], h["changed_by"], h["previous"]) for h in history] == [
        (1, "dr.jones", {})
    ]
    assert history[0]["current"] == {
        "threshold:systolic_bp:severe": {"limit": 170, "hysteresis": 5}
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (["limit=nan"], "finite"),
        (["unit=kPa"], "not 'kPa'"),
        (["limit=80"], "not below"),  # the low limit (90) would sit above this high one
        (["colour=red"], "Extra inputs"),
    ],
)
def test_bad_rule_changes_are_refused_and_nothing_applied(
    db_url: str, monkeypatch: pytest.MonkeyPatch, changes: list[str], message: str
) -> None:
    with psycopg.connect(db_url) as conn:
        add_patient(conn, nhs_number=NHS, name="P", conditions=["hypertension"], team="deal")
        conn.commit()
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "rules",
            "set",
            NHS,
            "threshold:systolic_bp:severe",
            *changes,
            "limit=170" if changes[0] == "colour=red" else "hysteresis=2",
            "--by",
            "x",
            "--reason",
            "y",
        ],
    )
    assert result.exit_code == 2
    assert message in result.stderr
    assert count_rows(db_url, "SELECT count(*) FROM patient_rules") == 0
    assert count_rows(db_url, "SELECT count(*) FROM patient_rules_history") == 0
    unknown = runner.invoke(
        cli, ["rules", "set", NHS, "threshold:spo2:low", "limit=90", "--by", "x", "--reason", "y"]
    )
    assert "no such rule" in unknown.stderr


async def test_the_patient_is_told_on_their_device(
    settings: Settings, db_url: str, broker_url: str
) -> None:
    from homeward.mqtt import make_client

    received: list[tuple[str, bytes]] = []
    listener = make_client(settings.mqtt, unique("patient-"))
    listener.on_message = lambda _c, _u, msg: received.append((msg.topic, bytes(msg.payload)))
    listener.connect(settings.mqtt.host, settings.mqtt.port)
    listener.subscribe(settings.device_topic("+", "feedback"), qos=1)
    listener.loop_start()
    pub = Publisher(broker_url)
    try:
        async with running_service(settings):
            pub.publish(settings.readings_topic("bp-1"), bp("f1", 188))
            await async_wait_until(lambda: len(received) >= 2, what="feedback on the cuff")
    finally:
        pub.close()
        listener.loop_stop()
        listener.disconnect()
    messages = {orjson.loads(m)["message"] for _, m in received}
    assert any("sent to your nurse" in m or "repeat your blood pressure" in m for m in messages)
    # Only the device that took the reading is told (never the scales: issue 14, item 6).
    assert {topic.split("/")[-2] for topic, _ in received} == {"bp-1"}
    assert count_rows(db_url, "SELECT count(*) FROM notification_attempts WHERE ok") >= 2
    assert count_rows(db_url, "SELECT count(*) FROM notifications WHERE target = 'sc-1'") == 0
