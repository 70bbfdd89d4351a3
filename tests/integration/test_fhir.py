"""FHIR R4 under /fhir over real HTTP against a real PostgreSQL: every resource validated
by fhir.resources (R4B models) and checked against the vital-signs rules docs/fhir.md
states; who sees what and the audit, as for /api/v1; search and paging properties."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp.test_utils import TestServer
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from alerts import escalation_store
from alerts.teams import load_org_file
from api.app import create_app
from api.fhir.codes import READING_FLAG_EXTENSION
from api.tokens import issue_token
from devices.registry import add_device, add_patient

EXAMPLE = (Path(__file__).parents[2] / "deploy" / "teams.example.yaml").read_text()
DEAL_NHS, DOVER_NHS, UNKNOWN_NHS = "9434765919", "9434765870", "4010232137"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=3)
MODELS: dict[str, Any] = {
    "Bundle": Bundle,
    "CapabilityStatement": CapabilityStatement,
    "Device": Device,
    "Flag": Flag,
    "Observation": Observation,
    "OperationOutcome": OperationOutcome,
    "Patient": Patient,
}
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def _message(
    conn: psycopg.Connection[Any],
    pid: int,
    device: str,
    msg: str,
    at: datetime,
    readings: list[tuple[str, float]],
    flags: list[str] | None = None,
    late: bool = False,
) -> None:
    for metric, value in readings:
        conn.execute(
            "INSERT INTO readings (time, patient_id, device_id, metric, value, received_at,"
            " msg_id, flags, late) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (at, pid, device, metric, value, at + timedelta(seconds=2), msg, flags, late),
        )


@pytest.fixture
def seeded(db_url: str) -> dict[str, Any]:
    """A Deal patient with a BP cuff, scales and an oximeter (36 messages over 3 days,
    some at one instant), a Dover patient, an open alert, and tokens."""
    with psycopg.connect(db_url) as conn:
        escalation_store.load_organisation(conn, load_org_file(EXAMPLE), EXAMPLE)
        deal = add_patient(conn, nhs_number=DEAL_NHS, name="Dee Deal", team="deal")
        dover = add_patient(conn, nhs_number=DOVER_NHS, name="Dov Dover", team="dover")
        for device in ("bp-1", "scale-1", "ox_1"):
            add_device(conn, device, patient_nhs_number=DEAL_NHS)
        add_device(conn, "bp-9", patient_nhs_number=DOVER_NHS)
        for i in range(12):
            at = START + timedelta(hours=6 * i)
            _message(
                conn,
                deal.patient_id,
                "bp-1",
                f"bp-{i}",
                at,
                [("systolic_bp", 130 + i), ("diastolic_bp", 80), ("heart_rate", 70 + i)],
                flags=["irregular_pulse"] if i == 3 else None,
            )
            _message(conn, deal.patient_id, "scale-1", f"w-{i}", at, [("body_weight", 80 + i / 10)])
            _message(conn, deal.patient_id, "ox_1", f"ox-{i}", at, [("spo2", 95)], late=(i == 0))
        _message(conn, dover.patient_id, "bp-9", "bp-0", START, [("systolic_bp", 150)])
        conn.execute(
            "INSERT INTO alerts (patient_id, rule_id, kind, metric, priority, team_id,"
            " first_measured_at, latest_measured_at, message)"
            " VALUES (%s, 'threshold:systolic_bp:high', 'threshold', 'systolic_bp', 'amber',"
            " 'deal', %s, %s, 'Systolic 141 above 140')",
            (deal.patient_id, NOW, NOW),
        )
        conn.commit()
        tokens = {
            who: issue_token(conn, now=NOW, staff_id=who)[1]
            for who in ("deal.mn1", "deal.sw1", "dover.mn1")
        }
        tokens["patient"] = issue_token(conn, now=NOW, nhs_number=DEAL_NHS)[1]
    return {"tokens": tokens, "deal": deal.patient_id}


class Fhir:
    def __init__(self, session: aiohttp.ClientSession, base: str, tokens: dict[str, str]) -> None:
        self.session, self.base, self.tokens = session, base, tokens

    async def get(self, path: str, who: str | None = None, **params: Any) -> tuple[int, Any]:
        """GET and validate whatever comes back with its fhir.resources model."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        query = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
        url = path if path.startswith("http") else f"{self.base}{path}"
        async with self.session.get(url, headers=headers, params=query or None) as r:
            assert r.content_type == "application/fhir+json", await r.text()
            body = await r.json()
        MODELS[body["resourceType"]].model_validate(body)
        for entry in body.get("entry", ()):
            MODELS[entry["resource"]["resourceType"]].model_validate(entry["resource"])
        return r.status, body


@pytest.fixture
async def fhir(db_url: str, seeded: dict[str, Any]) -> AsyncIterator[Fhir]:
    pool = AsyncConnectionPool(db_url, min_size=1, max_size=4, open=False)
    await pool.open()
    server = TestServer(create_app(pool, lambda: {}), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Fhir(session, str(server.make_url("/fhir/")), seeded["tokens"])
    finally:
        await server.close()
        await pool.close()


def audit(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT actor, action, allowed, status FROM audit_log ORDER BY audit_id"
        ).fetchall()


def _codes(concept: dict[str, Any], system: str) -> set[str]:
    return {c["code"] for c in concept["coding"] if c["system"] == system}


async def test_metadata_lists_exactly_what_is_served(fhir: Fhir) -> None:
    status, body = await fhir.get("metadata")
    assert status == 200
    assert body["fhirVersion"] == "4.0.1"
    served = {r["type"]: r for r in body["rest"][0]["resource"]}
    assert set(served) == {"Patient", "Observation", "Device", "Flag"}
    assert {p["name"] for p in served["Observation"]["searchParam"]} == {
        "patient",
        "code",
        "date",
        "_count",
        "_sort",
    }
    assert [o["name"] for o in served["Observation"]["operation"]] == ["lastn"]
    for kind, resource in served.items():
        for interaction in resource["interaction"]:
            if interaction["code"] == "read":
                status, _ = await fhir.get(f"{kind}/{DEAL_NHS}", "deal.mn1")
                assert status == 200


async def test_patient_read_and_search_by_nhs_number(fhir: Fhir, db_url: str) -> None:
    status, patient = await fhir.get(f"Patient/{DEAL_NHS}", "deal.mn1")
    assert status == 200
    assert patient["identifier"] == [{"system": NHS_SYSTEM, "value": DEAL_NHS}]
    status, found = await fhir.get("Patient", "deal.mn1", identifier=f"{NHS_SYSTEM}|{DEAL_NHS}")
    assert [e["resource"]["id"] for e in found["entry"]] == [DEAL_NHS]
    # forbidden and unknown: the same empty search and the same 404 read, all audited
    for number in (DOVER_NHS, UNKNOWN_NHS):
        status, found = await fhir.get("Patient", "deal.mn1", identifier=f"{NHS_SYSTEM}|{number}")
        assert status == 200
        assert found["entry"] == []
        status, outcome = await fhir.get(f"Patient/{number}", "deal.mn1")
        assert status == 404
        assert outcome["issue"][0]["code"] == "not-found"
    rows = audit(db_url)
    assert [r[2] for r in rows] == [True, True, False, False, False, False]
    assert {r[1] for r in rows} == {"fhir_read_patient", "fhir_search_patient"}


async def test_observations_follow_the_vital_signs_profile(fhir: Fhir) -> None:
    status, page = await fhir.get(
        "Observation", "deal.mn1", patient=f"Patient/{DEAL_NHS}", _count="1000"
    )
    assert status == 200
    observations = [e["resource"] for e in page["entry"]]
    assert len(observations) == 12 * 4  # BP panel, heart rate, weight and SpO2 per 6 h
    for o in observations:
        assert o["status"] == "final"
        assert o["subject"]["identifier"] == {"system": NHS_SYSTEM, "value": DEAL_NHS}
        assert o["effectiveDateTime"].endswith("+00:00")
        assert o["device"]["reference"].startswith("Device/")
        assert _codes(o["code"], SNOMED), o["code"]
    by_code: dict[str, list[dict[str, Any]]] = {}
    for o in observations:
        by_code.setdefault(next(iter(_codes(o["code"], LOINC))), []).append(o)
    panels = by_code["85354-9"]
    assert len(panels) == 12
    assert "valueQuantity" not in panels[0]
    systolic, diastolic = panels[0]["component"]
    assert _codes(systolic["code"], LOINC) == {"8480-6"}
    assert _codes(diastolic["code"], LOINC) == {"8462-4"}
    assert systolic["valueQuantity"] == {
        "value": 130,
        "unit": "mm[Hg]",
        "system": "http://unitsofmeasure.org",
        "code": "mm[Hg]",
    }
    assert "http://hl7.org/fhir/StructureDefinition/bp" in panels[0]["meta"]["profile"]
    weights = by_code["29463-7"]
    assert weights[1]["valueQuantity"]["value"] == 80.1
    assert weights[1]["valueQuantity"]["code"] == "kg"
    spo2 = [o for o in observations if "2708-6" in _codes(o["code"], LOINC)]
    assert len(spo2) == 12
    assert {o["valueQuantity"]["code"] for o in spo2} == {"%"}
    assert spo2[0]["extension"][0]["valueBoolean"] is True  # the late upload is marked
    flagged = [o for o in observations if "extension" in o and o not in spo2[:1]]
    assert [(e["url"], e["valueString"]) for o in flagged for e in o["extension"]] == [
        (READING_FLAG_EXTENSION, "irregular_pulse"),
        (READING_FLAG_EXTENSION, "irregular_pulse"),  # the heart rate of that message too
    ]
    devices = {o["device"]["reference"] for o in observations}
    assert devices == {"Device/bp-1", "Device/scale-1", f"Device/{_device_id('ox_1')}"}


def _device_id(device: str) -> str:
    from api.fhir.resources import device_id

    return device_id(device)


async def test_code_and_date_searches(fhir: Fhir) -> None:
    day2 = (START + timedelta(days=1)).date().isoformat()
    status, page = await fhir.get(
        "Observation",
        "deal.mn1",
        patient=DEAL_NHS,
        code="http://loinc.org|85354-9,29463-7",
        date=[f"ge{day2}", f"le{day2}"],
    )
    assert status == 200
    times = {e["resource"]["effectiveDateTime"][:10] for e in page["entry"]}
    assert times == {day2}
    assert len(page["entry"]) == 2 * 4  # one day: four BP panels and four weights
    status, page = await fhir.get(
        "Observation", "deal.mn1", patient=DEAL_NHS, code="27113001", _sort="-date", _count="3"
    )  # SNOMED CT body weight, newest first
    values = [e["resource"]["valueQuantity"]["value"] for e in page["entry"]]
    assert values == [81.1, 81.0, 80.9]
    assert [link["relation"] for link in page["link"]] == ["self", "next"]


async def test_lastn_gives_the_latest_of_each_code(fhir: Fhir) -> None:
    status, page = await fhir.get("Observation/$lastn", "deal.mn1", patient=DEAL_NHS, max="2")
    assert status == 200
    latest = [e["resource"] for e in page["entry"]]
    assert len(latest) == 4 * 2
    weights = [o["valueQuantity"]["value"] for o in latest if "29463-7" in _codes(o["code"], LOINC)]
    assert weights == [81.1, 81.0]


async def test_devices_and_flags(fhir: Fhir) -> None:
    status, page = await fhir.get("Device", "deal.mn1", patient=DEAL_NHS)
    assert status == 200
    devices = {e["resource"]["identifier"][0]["value"]: e["resource"] for e in page["entry"]}
    assert set(devices) == {"bp-1", "scale-1", "ox_1"}
    assert {d["status"] for d in devices.values()} == {"active"}
    status, page = await fhir.get("Flag", "deal.mn1", patient=DEAL_NHS)
    [flag] = [e["resource"] for e in page["entry"]]
    assert flag["status"] == "active"
    assert flag["code"]["text"] == "Systolic 141 above 140"
    priority = flag["extension"][0]["valueCodeableConcept"]["coding"][0]
    assert priority["code"] == "PM"  # amber: medium priority


async def test_who_sees_what_is_the_apis_decision(fhir: Fhir, db_url: str) -> None:
    status, outcome = await fhir.get("Observation", None, patient=DEAL_NHS)
    assert status == 401
    assert outcome["resourceType"] == "OperationOutcome"
    for who, number, expected in (
        ("patient", DEAL_NHS, 200),  # their own record
        ("patient", DOVER_NHS, 404),
        ("dover.mn1", DEAL_NHS, 404),  # another team's patient: same as unknown
        ("deal.sw1", DEAL_NHS, 404),  # no clinical role
        ("deal.mn1", UNKNOWN_NHS, 404),
    ):
        for path in ("Observation", "Device", "Flag"):
            status, body = await fhir.get(path, who, patient=number)
            assert status == expected, (who, number, path, body)
    actions = [r for r in audit(db_url) if r[1].startswith("fhir_")]
    assert len(actions) == 15
    assert sum(1 for r in actions if r[2]) == 3


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"patient": "123"},
        {"patient": DEAL_NHS, "code": "1234-5"},
        {"patient": DEAL_NHS, "date": "2026-13-01"},
        {"patient": DEAL_NHS, "date": "ge2026-11-01T10:00"},  # a time needs an offset
        {"patient": DEAL_NHS, "date": ["ge2026", "le2027", "eq2026-01"]},
        {"patient": DEAL_NHS, "_count": "0"},
        {"patient": DEAL_NHS, "_count": "1e3"},
        {"patient": DEAL_NHS, "_sort": "value"},
        {"patient": DEAL_NHS, "_cursor": "not-a-cursor"},
        {"patient": DEAL_NHS, "category": "vital-signs"},
        {"patient": [DEAL_NHS, DEAL_NHS]},
    ],
)
async def test_bad_searches_are_operation_outcomes_that_name_the_problem(
    fhir: Fhir, db_url: str, params: dict[str, Any]
) -> None:
    status, outcome = await fhir.get("Observation", "deal.mn1", **params)
    assert audit(db_url) == [("staff:deal.mn1", "fhir_search_observations", False, 400)]
    assert status == 400
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "invalid"
    assert outcome["issue"][0]["diagnostics"]


async def test_an_unknown_path_is_an_operation_outcome(fhir: Fhir) -> None:
    status, outcome = await fhir.get("Encounter", "deal.mn1")
    assert status == 404
    assert outcome["issue"][0]["code"] == "not-found"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    count=st.integers(1, 60),
    first=st.integers(0, 80),
    hours=st.integers(1, 80),
    descending=st.booleans(),
)
async def test_paging_returns_each_matching_observation_exactly_once(
    fhir: Fhir, count: int, first: int, hours: int, descending: bool
) -> None:
    since = START + timedelta(hours=first)
    until = since + timedelta(hours=hours)
    params = {
        "patient": DEAL_NHS,
        "date": [f"ge{since.isoformat()}", f"lt{until.isoformat()}"],
        "_count": str(count),
        "_sort": "-date" if descending else "date",
    }
    status, whole = await fhir.get("Observation", "deal.mn1", **{**params, "_count": "1000"})
    assert status == 200
    expected = [e["resource"]["id"] for e in whole["entry"]]
    seen: list[str] = []
    status, page = await fhir.get("Observation", "deal.mn1", **params)
    for _ in range(len(expected) + 2):  # a cursor that does not move on fails, not hangs
        assert status == 200
        assert len(page["entry"]) <= count
        seen += [e["resource"]["id"] for e in page["entry"]]
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        status, page = await fhir.get(following[0], "deal.mn1")
    else:
        pytest.fail(f"paging did not end: {len(seen)} entries seen of {len(expected)}")
    assert seen == expected
    times = [e["resource"]["effectiveDateTime"] for e in whole["entry"]]
    assert times == sorted(times, reverse=descending)
    assert all(since.isoformat() <= t < until.isoformat() for t in times)
