"""The CapabilityStatement: exactly what ``/fhir`` supports, no more (docs/fhir.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import homeward
from api.fhir.search import MAX_COUNT, MAX_LASTN

LASTN = {
    "name": "lastn",
    "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn",
    "documentation": f"patient (required), code, max 1–{MAX_LASTN}",
}

# (resource, interactions, search parameters (name, type, documentation)), in the order
# docs/fhir.md describes them.
SUPPORTED: tuple[tuple[str, tuple[str, ...], tuple[tuple[str, str, str], ...]], ...] = (
    (
        "Patient",
        ("read", "search-type"),
        (("identifier", "token", "https://fhir.nhs.uk/Id/nhs-number|<NHS number>; required"),),
    ),
    (
        "Observation",
        ("search-type", "create"),
        (
            ("patient", "reference", "Patient/<NHS number>; required (alias: subject)"),
            ("code", "token", "LOINC or SNOMED CT, comma-separated or repeated"),
            ("date", "date", "eq, ge, gt, le or lt; at most a lower and an upper bound"),
            ("_count", "number", f"page size, 1–{MAX_COUNT} (default 100)"),
            ("_sort", "string", "date (default) or -date"),
        ),
    ),
    (
        "Device",
        ("search-type",),
        (("patient", "reference", "Patient/<NHS number>; required"),),
    ),
    (
        "Flag",
        ("search-type",),
        (("patient", "reference", "Patient/<NHS number>; required; unresolved alerts"),),
    ),
)


def capability_statement(base: str, now: datetime) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now.date().isoformat(),
        "publisher": "Homeward",
        "kind": "instance",
        "software": {"name": "Homeward", "version": homeward.__version__},
        "implementation": {"description": "Homeward remote monitoring", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "description": "Reads: bearer tokens (homeward token issue), the same "
                    "access decisions and audit as /api/v1 (docs/api.md). Posted "
                    "Observations: the device's own credential, HTTP Basic",
                },
                # A Bundle of Observations posted by a device: each entry on its own.
                "interaction": [{"code": "batch"}, {"code": "transaction"}],
                "resource": [
                    {
                        "type": kind,
                        "interaction": [{"code": code} for code in interactions],
                        "searchParam": [
                            {"name": name, "type": kind_, "documentation": doc}
                            for name, kind_, doc in params
                        ],
                        **({"operation": [LASTN]} if kind == "Observation" else {}),
                    }
                    for kind, interactions, params in SUPPORTED
                ],
            }
        ],
    }
