"""End to end: a blood pressure published over MQTT is read through the HTTP API — by
the patient's nurse in the team queue and the readings, and by the patient themself —
and each of those reads is in the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import psycopg

from alerts import escalation_store
from alerts.teams import load_org_file
from api.tokens import issue_token
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

EXAMPLE = (Path(__file__).parents[2] / "deploy" / "teams.example.yaml").read_text()
NHS = "9434765919"


async def test_a_reading_published_over_mqtt_is_read_through_the_api(
    db_url: str, broker_url: str
) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        escalation_store.load_organisation(conn, load_org_file(EXAMPLE), EXAMPLE)
        add_patient(
            conn, nhs_number=NHS, name="Api Patient", team="deal", conditions=["hypertension"]
        )
        add_device(conn, "bp-1", patient_nhs_number=NHS)
        conn.commit()
        _, nurse = issue_token(conn, now=now, staff_id="deal.mn1")
        _, patient = issue_token(conn, now=now, nhs_number=NHS)
    settings = make_settings(db_url, broker_url)
    pub = Publisher(broker_url)
    try:
        async with running_service(settings) as service, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{service.http_port}/api/v1"
            payload = reading_payload(
                "bp-1", [("systolic_bp", 186, "mm[Hg]"), ("diastolic_bp", 96, "mm[Hg]")]
            )
            pub.publish(settings.readings_topic("bp-1"), payload)
            await async_wait_until(
                lambda: count_rows(db_url, "SELECT count(*) FROM alerts") >= 1, what="an alert"
            )
            as_nurse = {"Authorization": f"Bearer {nurse}"}
            async with http.get(f"{base}/queue", headers=as_nurse) as r:
                assert r.status == 200
                queue = await r.json()
            async with http.get(f"{base}/patients/{NHS}/readings", headers=as_nurse) as r:
                assert r.status == 200
                readings = await r.json()
            async with http.get(
                f"{base}/patients/{NHS}/readings",
                headers={"Authorization": f"Bearer {patient}"},
                params={"metric": "systolic_bp"},
            ) as r:
                assert r.status == 200
                own = await r.json()
    finally:
        pub.close()
        purge_session(settings)
    severe = [a for a in queue["alerts"] if a["priority"] == "red"]
    assert [(a["nhs_number"], a["latest_value"]) for a in severe] == [(NHS, 186.0)]
    assert sorted((r["metric"], r["value"]) for r in readings["readings"]) == [
        ("diastolic_bp", 96.0),
        ("systolic_bp", 186.0),
    ]
    assert [(r["value"], r["unit"]) for r in own["readings"]] == [(186.0, "mm[Hg]")]
    with psycopg.connect(db_url) as conn:
        audited = conn.execute(
            "SELECT actor, action, allowed FROM audit_log ORDER BY audit_id"
        ).fetchall()
    assert audited == [
        ("staff:deal.mn1", "read_queue", True),
        ("staff:deal.mn1", "read_readings", True),
        (f"patient:{NHS}", "read_readings", True),
    ]
