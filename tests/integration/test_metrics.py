"""/metrics through the running service: its counts equal what an end-to-end run
published, stored and quarantined, alerts and API answers included."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from devices.registry import add_device, add_patient
from support import (
    Publisher,
    async_wait_until,
    count_rows,
    make_settings,
    purge_session,
    reading_payload,
    running_service,
)

NHS = "9434765919"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_what_was_published_stored_and_quarantined(
    db_url: str, broker_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        add_patient(
            conn, nhs_number=NHS, name="Metrics Patient", team="deal", conditions=["hypertension"]
        )
        add_device(conn, "bp-1", patient_nhs_number=NHS)
        conn.commit()
    settings = make_settings(db_url, broker_url)
    pub = Publisher(broker_url)
    topic = settings.readings_topic("bp-1")
    at = datetime.now(UTC)
    bp = [("systolic_bp", 128, "mm[Hg]"), ("diastolic_bp", 80, "mm[Hg]")]
    try:
        async with running_service(settings) as service, aiohttp.ClientSession() as http:
            for i in range(5):
                pub.publish(topic, reading_payload(f"m{i}", bp, measured_at=at))
            pub.publish(topic, reading_payload("m0", bp, measured_at=at))  # a duplicate
            pub.publish(topic, reading_payload("hi", [("systolic_bp", 186, "mm[Hg]")]))
            pub.publish(topic, b"not json")
            pub.publish(topic, reading_payload("u", [("body_weight", 80, "stone")]))
            await async_wait_until(
                lambda: (
                    count_rows(db_url) == 11
                    and count_rows(db_url, "SELECT count(*) FROM quarantine") == 2
                    and count_rows(db_url, "SELECT count(*) FROM alerts") >= 1
                ),
                what="everything stored",
            )
            base = f"http://127.0.0.1:{service.http_port}"
            async with http.get(f"{base}/api/v1/me") as r:
                assert r.status == 401
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                got = samples(await r.text())
    finally:
        pub.close()
        purge_session(settings)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT priority, count(*) FROM alerts GROUP BY 1").fetchall()
        alerts: dict[str, int] = {str(p): int(str(n)) for p, n in rows}
    assert got[("homeward_readings_stored_total", ())] == 11
    assert got[("homeward_readings_duplicate_total", ())] == 2  # the redelivery's two values
    assert got[("homeward_messages_quarantined_total", ())] == 2
    assert got[("homeward_quarantined_total", (("reason", "malformed_json"),))] == 1
    assert got[("homeward_quarantined_total", (("reason", "unknown_unit"),))] == 1
    assert got[("homeward_mqtt_received_total", ())] >= 9
    assert (
        got[("homeward_ingest_batch_messages_count", ())]
        == got[("homeward_ingest_batches_total", ())]
    )
    for priority, n in alerts.items():
        assert got[("homeward_alerts_raised_total", (("priority", priority),))] == n
    assert got[("homeward_database_up", ())] == 1
    assert got[("homeward_mqtt_connected", ())] == 1
    answered = (
        "homeward_api_request_seconds_count",
        (("route", "read_identity"), ("status", "401")),
    )
    assert got[answered] == 1
