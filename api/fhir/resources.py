"""Homeward's records as FHIR R4 resources: pure functions from rows to JSON objects.

The resources are built as plain dictionaries (serialised with orjson), not as
``fhir.resources`` models: the models cost about half a millisecond per Observation to
build and dump, a week of one patient's readings would then take longer than the whole
plain-API answer. Every shape built here is validated by ``fhir.resources`` (R4B) in the
tests instead (tests/integration/test_fhir.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from api.fhir import codes
from api.fhir.codes import CODES, ObservationCode
from homeward.metrics import CATALOGUE
from homeward.nhs import FHIR_SYSTEM as NHS_NUMBER_SYSTEM

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
Json = dict[str, Any]


def instant(value: datetime) -> str:
    """A FHIR ``instant``/``dateTime``: UTC with an offset, microseconds kept."""
    return value.astimezone(UTC).isoformat()


def patient_reference(nhs_number: str) -> Json:
    return {
        "reference": f"Patient/{nhs_number}",
        "identifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs_number},
    }


def device_id(device: str) -> str:
    """The Device's logical id: the device id itself when FHIR allows it (letters,
    digits, ``-`` and ``.``), otherwise a stable digest of it."""
    if FHIR_ID.match(device):
        return device
    return "d-" + hashlib.sha256(device.encode()).hexdigest()[:40]


def observation_id(patient_id: int, kind: str, time: datetime, device: str, msg_id: str) -> str:
    """Stable and unique: the patient, the kind, the measured instant (µs) and a digest
    of the device's message, which the unique key of a reading includes."""
    micros = round(time.timestamp() * 1_000_000)
    digest = hashlib.sha256(f"{device}\x00{msg_id}".encode()).hexdigest()[:12]
    return f"{kind.replace('_', '-')}.{patient_id}.{micros}.{digest}"


def _coding(code: ObservationCode) -> Json:
    codings = [
        {"system": codes.LOINC, "code": loinc, "display": code.display} for loinc in code.loinc
    ]
    codings.append({"system": codes.SNOMED, "code": code.snomed, "display": code.snomed_display})
    return {"coding": codings, "text": code.display}


def _quantity(metric: str, value: float) -> Json:
    spec = CATALOGUE[metric]
    return {
        "value": round(value, spec.decimals) if spec.decimals else round(value),
        "unit": spec.unit,
        "system": codes.UCUM,
        "code": spec.unit,
    }


def _component(metric: str, value: float | None) -> Json:
    spec = CATALOGUE[metric]
    snomed, display, _ = codes.SNOMED_CODES[metric]
    component: Json = {
        "code": {
            "coding": [
                {"system": codes.LOINC, "code": spec.loinc, "display": spec.display},
                {"system": codes.SNOMED, "code": snomed, "display": display},
            ],
            "text": spec.display,
        }
    }
    if value is None:
        component["dataAbsentReason"] = {
            "coding": [{"system": codes.DATA_ABSENT, "code": "not-performed"}]
        }
    else:
        component["valueQuantity"] = _quantity(metric, value)
    return component


def observation(row: Mapping[str, Any], nhs_number: str) -> Json:
    """One stored message's readings of one kind (``fhir_observations``) → Observation."""
    code = CODES[row["kind"]]
    parts: dict[str, Json] = {p["metric"]: p for p in row["parts"]}
    flags = sorted({flag for p in row["parts"] for flag in (p.get("flags") or ())})
    resource: Json = {
        "resourceType": "Observation",
        "id": observation_id(
            row["patient_id"], row["kind"], row["time"], row["device_id"], row["msg_id"]
        ),
        "meta": {"profile": [codes.VITAL_SIGNS_PROFILE, code.profile] if code.profile else []},
        "identifier": [
            {
                "system": codes.READING_IDENTIFIER,
                "value": f"{row['device_id']}/{row['msg_id']}/{row['kind']}",
            }
        ],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": codes.CATEGORY,
                        "code": code.category,
                        "display": "Vital Signs"
                        if code.category == "vital-signs"
                        else "Laboratory",
                    }
                ]
            }
        ],
        "code": _coding(code),
        "subject": patient_reference(nhs_number),
        "effectiveDateTime": instant(row["time"]),
        "issued": instant(row["received_at"]),
        "device": {"reference": f"Device/{device_id(row['device_id'])}"},
    }
    if not resource["meta"]["profile"]:
        del resource["meta"]
    if code.key == codes.BLOOD_PRESSURE:
        resource["component"] = [
            _component(metric, parts[metric]["value"] if metric in parts else None)
            for metric in codes.BP_COMPONENTS
        ]
    else:
        resource["valueQuantity"] = _quantity(code.key, parts[code.key]["value"])
    extensions = [{"url": codes.READING_FLAG_EXTENSION, "valueString": flag} for flag in flags]
    if row["late"]:
        extensions.append({"url": codes.LATE_EXTENSION, "valueBoolean": True})
    if extensions:
        resource["extension"] = extensions
    return resource


def patient(row: Mapping[str, Any]) -> Json:
    return {
        "resourceType": "Patient",
        "id": row["nhs_number"],
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": row["nhs_number"]}],
        "active": True,
        "name": [{"text": row["display_name"]}],
    }


def device(row: Mapping[str, Any], nhs_number: str) -> Json:
    """A device bound to the patient now (``active``) or before (``inactive``)."""
    resource: Json = {
        "resourceType": "Device",
        "id": device_id(row["device_id"]),
        "identifier": [{"system": codes.DEVICE_IDENTIFIER, "value": row["device_id"]}],
        "status": "active" if row["valid_to"] is None else "inactive",
        "patient": patient_reference(nhs_number),
    }
    if row["kind"]:
        resource["type"] = {"text": row["kind"]}
    if row["firmware"]:
        resource["version"] = [{"type": {"text": "firmware"}, "value": row["firmware"]}]
    if row["battery"] is not None:
        resource["property"] = [
            {
                "type": {"text": "battery level"},
                "valueQuantity": [
                    {"value": row["battery"], "unit": "%", "system": codes.UCUM, "code": "%"}
                ],
            }
        ]
    if row["last_msg_at"] is not None:
        resource["extension"] = [
            {"url": codes.LAST_SEEN_EXTENSION, "valueDateTime": instant(row["last_msg_at"])}
        ]
    return resource


def flag(row: Mapping[str, Any], nhs_number: str) -> Json:
    """An unresolved alert: the patient is under active concern."""
    priority = codes.PRIORITY_CODES[row["priority"]]
    kind = "technical" if row["priority"] == "technical" else "clinical"
    return {
        "resourceType": "Flag",
        "id": f"alert-{row['alert_id']}",
        "extension": [
            {
                "url": codes.FLAG_PRIORITY_EXTENSION,
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": codes.FLAG_PRIORITY,
                            "code": priority,
                            "display": codes.PRIORITY_DISPLAY[priority],
                        }
                    ],
                    "text": row["priority"],
                },
            }
        ],
        "status": "active",
        "category": [
            {
                "coding": [{"system": codes.ALERT_KIND, "code": kind}],
                "text": f"Remote monitoring: {kind} alert",
            }
        ],
        "code": {
            "coding": [{"system": codes.ALERT_RULE, "code": row["rule_id"]}],
            "text": row["message"],
        },
        "subject": patient_reference(nhs_number),
        "period": {"start": instant(row["opened_at"])},
    }


def bundle(entries: Iterable[Json], base: str, self_url: str, next_url: str | None) -> Json:
    """A ``searchset`` Bundle; ``next`` is there only when another page exists."""
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in entries
        ],
    }


def operation_outcome(status: int, message: str, problems: Sequence[str] = ()) -> Json:
    code = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 409: "conflict"}
    issues = [
        {
            "severity": "error",
            "code": code.get(status, "exception" if status >= 500 else "processing"),
            "diagnostics": message,
        }
    ]
    issues += [{"severity": "error", "code": "invalid", "diagnostics": p} for p in problems]
    return {"resourceType": "OperationOutcome", "issue": issues}
