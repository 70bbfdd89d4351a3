"""Readings posted as FHIR Observations (and Bundles of them) through the running
service: the same rows and the same alert as over MQTT and v1 HTTP, the device's own
credential, unknown codes and units refused as MQTT refuses them, bad bodies kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import psycopg
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome

from devices.registry import add_device, add_patient
from service.wiring import HomewardService
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
PASSWORDS = {"bp-1": "bp-secret", "scale-1": "scale-secret"}
SEVERE = "SELECT count(*) FROM alerts WHERE rule_id LIKE '%:severe'"


def bp_observation(msg: str, at: datetime, systolic: float, device: str = "bp-1") -> dict[str, Any]:
    def component(loinc: str, value: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "valueQuantity": {
                "value": value,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    resource = {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": msg}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{NHS}"},
        "effectiveDateTime": at.isoformat(),
        "device": {"reference": f"Device/{device}"},
        "component": [component("8480-6", systolic), component("8462-4", 96)],
    }
    Observation.model_validate(resource)  # what the test posts is itself valid FHIR
    return resource


@pytest.fixture
async def service(db_url: str, broker_url: str) -> AsyncIterator[tuple[Any, HomewardService]]:
    settings = make_settings(db_url, broker_url)
    with psycopg.connect(db_url) as conn:
        add_patient(
            conn, nhs_number=NHS, name="Fhir Patient", team="deal", conditions=["hypertension"]
        )
        for device, password in PASSWORDS.items():
            add_device(conn, device, patient_nhs_number=NHS, password=password)
        conn.commit()
    try:
        async with running_service(settings) as running:
            yield settings, running
    finally:
        purge_session(settings)


async def post(
    running: HomewardService, path: str, resource: Any, device: str = "bp-1"
) -> tuple[int, dict[str, Any]]:
    body = resource if isinstance(resource, bytes) else orjson.dumps(resource)
    auth = aiohttp.encode_basic_auth(device, PASSWORDS[device])
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{running.http_port}/fhir{path}",
            data=body,
            headers={"Authorization": auth, "Content-Type": "application/fhir+json"},
        ) as r,
    ):
        assert r.content_type == "application/fhir+json"
        return r.status, await r.json()


async def test_an_observation_over_fhir_is_the_reading_mqtt_and_v1_give(
    service: tuple[Any, HomewardService], db_url: str, broker_url: str
) -> None:
    settings, running = service
    at = datetime.now(UTC).replace(microsecond=0)
    pub = Publisher(broker_url)
    try:  # the same blood pressure over MQTT (msg a), v1 HTTP (msg b) and FHIR (msg c)
        pub.publish(
            settings.readings_topic("bp-1"),
            reading_payload(
                "a",
                [("systolic_bp", 186, "mm[Hg]"), ("diastolic_bp", 96, "mm[Hg]")],
                measured_at=at,
                patient_id=NHS,
            ),
        )
        await async_wait_until(lambda: count_rows(db_url) == 2, what="the MQTT reading")
    finally:
        pub.close()
    status, outcome = await post(running, "/Observation", bp_observation("c", at, 186))
    OperationOutcome.model_validate(outcome)
    assert status == 201, outcome
    assert count_rows(db_url) == 4
    status, outcome = await post(running, "/Observation", bp_observation("c", at, 186))
    assert status == 200  # the same identifier again: a duplicate, stored once
    assert "duplicate" in outcome["issue"][0]["diagnostics"]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT msg_id, metric, value, time, device_id, patient_id, flags, late"
            " FROM readings ORDER BY msg_id, metric"
        ).fetchall()
    assert [r[1:] for r in rows if r[0] == "a"] == [r[1:] for r in rows if r[0] == "c"]
    assert count_rows(db_url, SEVERE) == 1  # one alert, whichever door


async def test_a_bundle_of_observations_is_answered_entry_by_entry(
    service: tuple[Any, HomewardService], db_url: str
) -> None:
    _, running = service
    at = datetime.now(UTC).replace(microsecond=0)
    weight = {
        "resourceType": "Observation",
        "identifier": [{"value": "w-1"}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "effectiveDateTime": at.isoformat(),
        "valueQuantity": {"value": 180.5, "system": "http://unitsofmeasure.org", "code": "[lb_av]"},
    }
    unknown_unit = {
        **weight,
        "identifier": [{"value": "w-2"}],
        "valueQuantity": {"value": 12, "code": "[stone_av]"},
    }
    unknown_code = {
        **weight,
        "identifier": [{"value": "w-3"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": "Observation"}}
            for r in (weight, unknown_unit, unknown_code, {"resourceType": "Patient"})
        ],
    }
    Bundle.model_validate(bundle)
    status, reply = await post(running, "", bundle, device="scale-1")
    assert status == 200
    Bundle.model_validate(reply)
    assert reply["type"] == "batch-response"
    assert [e["response"]["status"] for e in reply["entry"]] == ["201", "422", "422", "422"]
    assert "unknown_unit" in reply["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]
    assert "unknown_metric" in reply["entry"][2]["response"]["outcome"]["issue"][0]["diagnostics"]
    with psycopg.connect(db_url) as conn:
        [(value,)] = conn.execute(
            "SELECT value FROM readings WHERE metric = 'body_weight'"
        ).fetchall()
        reasons = sorted(r for (r,) in conn.execute("SELECT reason FROM quarantine").fetchall())
    assert value == pytest.approx(180.5 * 0.45359237)  # converted explicitly, stored in kg
    assert reasons == ["unknown_metric", "unknown_unit"]


async def test_a_device_posts_only_its_own_observations_and_bad_bodies_are_kept(
    service: tuple[Any, HomewardService], db_url: str
) -> None:
    _, running = service
    at = datetime.now(UTC).replace(microsecond=0)
    status, outcome = await post(
        running, "/Observation", bp_observation("x", at, 120), device="scale-1"
    )
    assert status == 403  # scale-1's credential, bp-1 named as the device
    assert outcome["resourceType"] == "OperationOutcome"
    status, outcome = await post(running, "/Observation", b"{not json", device="scale-1")
    assert status == 422
    assert "quarantined (malformed_json)" in outcome["issue"][0]["diagnostics"]
    assert count_rows(db_url) == 0
    assert (
        count_rows(db_url, "SELECT count(*) FROM quarantine WHERE reason = 'malformed_json'") == 1
    )
    with psycopg.connect(db_url) as conn:
        refused = conn.execute(
            "SELECT actor, status FROM audit_log WHERE action = 'post_readings'"
        ).fetchall()
    assert refused == [("device:scale-1", 403)]
