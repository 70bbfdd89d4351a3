"""docs/payload.schema.json agrees with the parser on the examples and on bad shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "payload.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)

GOOD: list[dict[str, Any]] = [
    {
        "msg_id": "bp-000184",
        "measured_at": "2026-11-22T08:14:05+00:00",
        "device_seq": 184,
        "readings": [
            {"metric": "systolic_bp", "value": 152, "unit": "mm[Hg]"},
            {"metric": "diastolic_bp", "value": 94, "unit": "mm[Hg]"},
            {"metric": "heart_rate", "value": 88, "unit": "/min", "flags": ["irregular_pulse"]},
        ],
        "battery": 71,
    },
    {
        "msg_id": "ox-5521",
        "measured_at": "2026-11-22T08:20:00+00:00",
        "context": {"on_oxygen": True, "consciousness": "A"},
        "readings": [
            {"metric": "spo2", "value": 91, "unit": "%"},
            {"metric": "heart_rate", "value": 104, "unit": "/min"},
        ],
    },
]
BASE = {
    "msg_id": "m",
    "measured_at": "2026-11-22T08:20:00Z",
    "readings": [{"metric": "spo2", "value": 91, "unit": "%"}],
}
BAD = [
    {**BASE, "measured_at": "2026-11-22T08:20:00"},
    {**BASE, "readings": []},
    {**BASE, "readings": [{"metric": "spo2", "value": "91", "unit": "%"}]},
    {**BASE, "readings": [{"metric": "spo2", "value": 91, "unit": "percent"}]},
    {**BASE, "readings": [{"metric": "mood", "value": 1, "unit": "%"}]},
    {**BASE, "extra": 1},
    {**BASE, "context": {"consciousness": "X"}},
    {k: v for k, v in BASE.items() if k != "msg_id"},
]


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("doc", GOOD)
def test_design_examples_validate(doc: dict[str, Any]) -> None:
    VALIDATOR.validate(doc)


@pytest.mark.parametrize("doc", BAD)
def test_bad_shapes_fail(doc: dict[str, Any]) -> None:
    assert not VALIDATOR.is_valid(doc)


def test_schema_lists_exactly_the_catalogue() -> None:
    from homeward.metrics import CATALOGUE

    reading = SCHEMA["properties"]["readings"]["items"]["properties"]
    assert set(reading["metric"]["enum"]) == set(CATALOGUE)
    units = {u for spec in CATALOGUE.values() for u in spec.accepted_units}
    assert set(reading["unit"]["enum"]) == units
