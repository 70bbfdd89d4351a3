"""Payload v1 parsing: the examples of docs/payload.md, every rejection reason, and properties."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.payload import (
    MAX_DEVICE_SEQ,
    may_repeat_a_key,
    parse_measured_at,
    parse_reading_message,
    repeated_key,
)
from homeward.domain import Consciousness, DeviceMessage, Rejection, RejectReason
from homeward.metrics import CATALOGUE

NOW = datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
TOPIC = "homeward/v1/devices/bp-1/readings"

# The examples of docs/payload.md, verbatim.
# ruff: noqa: E501
BP_EXAMPLE = b"""{"msg_id": "bp-000184", "measured_at": "2026-11-22T08:14:05+00:00", "device_seq": 184,
 "readings": [{"metric": "systolic_bp", "value": 152, "unit": "mm[Hg]"},
              {"metric": "diastolic_bp", "value": 94, "unit": "mm[Hg]"},
              {"metric": "heart_rate", "value": 88, "unit": "/min", "flags": ["irregular_pulse"]}],
 "battery": 71}"""
OX_EXAMPLE = b"""{"msg_id": "ox-5521", "measured_at": "2026-11-22T08:20:00+00:00",
 "context": {"on_oxygen": true, "consciousness": "A"},
 "readings": [{"metric": "spo2", "value": 91, "unit": "%"},
              {"metric": "heart_rate", "value": 104, "unit": "/min"}]}"""


def parse(
    payload: bytes, topic: str = TOPIC, *, retained: bool = False
) -> DeviceMessage | Rejection:
    return parse_reading_message(topic, payload, retained=retained, now=NOW)


def message(**fields: Any) -> bytes:
    doc: dict[str, Any] = {
        "msg_id": "m-1",
        "measured_at": "2026-11-22T08:00:00+00:00",
        "readings": [{"metric": "spo2", "value": 95, "unit": "%"}],
    }
    doc.update(fields)
    return orjson.dumps({k: v for k, v in doc.items() if v is not None})


def test_blood_pressure_example() -> None:
    parsed = parse(BP_EXAMPLE)
    assert isinstance(parsed, DeviceMessage)
    assert parsed.device_id == "bp-1"
    assert parsed.msg_id == "bp-000184"
    assert parsed.measured_at == datetime(2026, 11, 22, 8, 14, 5, tzinfo=UTC)
    assert [(r.metric, r.value, r.unit) for r in parsed.readings] == [
        ("systolic_bp", 152.0, "mm[Hg]"),
        ("diastolic_bp", 94.0, "mm[Hg]"),
        ("heart_rate", 88.0, "/min"),
    ]
    assert parsed.readings[2].flags == ("irregular_pulse",)
    assert parsed.device_seq == 184
    assert parsed.battery == 71


def test_oximeter_example_carries_news2_context() -> None:
    parsed = parse(OX_EXAMPLE, "homeward/v1/devices/ox-1/readings")
    assert isinstance(parsed, DeviceMessage)
    assert parsed.context.on_oxygen is True
    assert parsed.context.consciousness is Consciousness.ALERT


def test_offsets_are_normalised_to_utc() -> None:
    parsed = parse(message(measured_at="2026-11-22T09:00:00+01:00"))
    assert isinstance(parsed, DeviceMessage)
    assert parsed.measured_at == datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    parsed = parse(message(measured_at="2026-11-22T08:00:00Z"))
    assert isinstance(parsed, DeviceMessage)


def test_non_canonical_units_are_converted_and_implausible_values_flagged() -> None:
    parsed = parse(
        message(
            readings=[
                {"metric": "blood_glucose", "value": 45, "unit": "mg/dL"},
                {"metric": "body_temperature", "value": 100.4, "unit": "[degF]"},
                {"metric": "heart_rate", "value": 240, "unit": "/min"},
            ]
        )
    )
    assert isinstance(parsed, DeviceMessage)
    glucose, temperature, pulse = parsed.readings
    assert (glucose.value, glucose.unit) == (2.5, "mmol/L")
    assert temperature.value == pytest.approx(38.0)
    assert temperature.unit == "Cel"
    assert pulse.flags == ("implausible",)


def test_payload_patient_id_is_normalised() -> None:
    parsed = parse(message(patient_id="943 476 5919"))
    assert isinstance(parsed, DeviceMessage)
    assert parsed.patient_nhs_number == "9434765919"


BAD: list[tuple[str, bytes, str, RejectReason]] = [
    ("empty", b"", TOPIC, RejectReason.MALFORMED_JSON),
    ("not json", b"hello", TOPIC, RejectReason.MALFORMED_JSON),
    ("truncated", BP_EXAMPLE[:40], TOPIC, RejectReason.MALFORMED_JSON),
    ("NaN", message().replace(b"95", b"NaN"), TOPIC, RejectReason.MALFORMED_JSON),
    ("Infinity", message().replace(b"95", b"Infinity"), TOPIC, RejectReason.MALFORMED_JSON),
    ("latin-1", '{"msg_id": "caf\xe9"}'.encode("latin-1"), TOPIC, RejectReason.NOT_UTF8),
    ("array", b"[]", TOPIC, RejectReason.SCHEMA),
    ("string", b'"reading"', TOPIC, RejectReason.SCHEMA),
    ("no msg_id", message(msg_id=None), TOPIC, RejectReason.SCHEMA),
    ("empty msg_id", message(msg_id=""), TOPIC, RejectReason.SCHEMA),
    ("msg_id number", message(msg_id=7), TOPIC, RejectReason.SCHEMA),
    ("no readings", message(readings=[]), TOPIC, RejectReason.SCHEMA),
    (
        "value string",
        message(readings=[{"metric": "spo2", "value": "95", "unit": "%"}]),
        TOPIC,
        RejectReason.SCHEMA,
    ),
    (
        "value bool",
        message(readings=[{"metric": "spo2", "value": False, "unit": "%"}]),
        TOPIC,
        RejectReason.SCHEMA,
    ),
    (
        "value null",
        message(readings=[{"metric": "spo2", "value": None, "unit": "%"}]),
        TOPIC,
        RejectReason.SCHEMA,
    ),
    ("no unit", message(readings=[{"metric": "spo2", "value": 95}]), TOPIC, RejectReason.SCHEMA),
    ("extra key", message(note="hi"), TOPIC, RejectReason.SCHEMA),
    ("naive time", message(measured_at="2026-11-22T08:00:00"), TOPIC, RejectReason.SCHEMA),
    ("date only", message(measured_at="2026-11-22"), TOPIC, RejectReason.SCHEMA),
    ("garbage time", message(measured_at="yesterday at 8"), TOPIC, RejectReason.SCHEMA),
    (
        "twice the metric",
        message(readings=[{"metric": "spo2", "value": 95, "unit": "%"}] * 2),
        TOPIC,
        RejectReason.SCHEMA,
    ),
    (
        "too many readings",
        message(readings=[{"metric": "spo2", "value": 95, "unit": "%"}] * 33),
        TOPIC,
        RejectReason.SCHEMA,
    ),
    ("battery 300", message(battery=300), TOPIC, RejectReason.SCHEMA),
    ("bad ACVPU", message(context={"consciousness": "Z"}), TOPIC, RejectReason.SCHEMA),
    (
        "nested",
        message(context={"on_oxygen": {"a": {"b": {"c": [1]}}}}),
        TOPIC,
        RejectReason.SCHEMA,
    ),
    ("bad NHS number", message(patient_id="1234567890"), TOPIC, RejectReason.SCHEMA),
    (
        "unknown metric",
        message(readings=[{"metric": "steps", "value": 5, "unit": "1"}]),
        TOPIC,
        RejectReason.UNKNOWN_METRIC,
    ),
    (
        "unknown unit",
        message(readings=[{"metric": "spo2", "value": 95, "unit": "percent"}]),
        TOPIC,
        RejectReason.UNKNOWN_UNIT,
    ),
    (
        "impossible",
        message(readings=[{"metric": "systolic_bp", "value": 400, "unit": "mm[Hg]"}]),
        TOPIC,
        RejectReason.IMPOSSIBLE_VALUE,
    ),
    (
        "impossible after conversion",
        message(readings=[{"metric": "body_temperature", "value": 120, "unit": "[degF]"}]),
        TOPIC,
        RejectReason.IMPOSSIBLE_VALUE,
    ),
    (
        "future",
        message(measured_at="2026-11-22T08:36:00+00:00"),
        TOPIC,
        RejectReason.FUTURE_TIMESTAMP,
    ),
    ("NUL", message(msg_id="a\u0000b"), TOPIC, RejectReason.UNSTORABLE_TEXT),
    ("oversized", message(firmware="x" * 17_000), TOPIC, RejectReason.OVERSIZED),
    ("wrong topic", message(), "homeward/v1/devices/bp-1/config", RejectReason.BAD_TOPIC),
    ("wildcard topic", message(), "homeward/v1/devices/+/readings", RejectReason.BAD_TOPIC),
    ("system topic", message(), "$SYS/broker/readings", RejectReason.BAD_TOPIC),
    ("nested device", message(), "homeward/v1/devices/a/b/readings", RejectReason.BAD_TOPIC),
]


@pytest.mark.parametrize(("label", "payload", "topic", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_rejected_with_its_reason(
    label: str, payload: bytes, topic: str, reason: RejectReason
) -> None:
    parsed = parse(payload, topic)
    assert isinstance(parsed, Rejection), label
    assert parsed.reason is reason, parsed.detail
    assert len(parsed.detail) > 10


def test_retained_readings_are_rejected() -> None:
    parsed = parse(BP_EXAMPLE, retained=True)
    assert isinstance(parsed, Rejection)
    assert parsed.reason is RejectReason.RETAINED


def test_future_tolerance_is_five_minutes_inclusive() -> None:
    edge = (NOW + timedelta(minutes=5)).isoformat()
    assert isinstance(parse(message(measured_at=edge)), DeviceMessage)


def test_rejections_name_the_device_and_message() -> None:
    parsed = parse(message(readings=[{"metric": "spo2", "value": 95, "unit": "x"}]))
    assert isinstance(parsed, Rejection)
    assert (parsed.device_id, parsed.msg_id) == ("bp-1", "m-1")
    assert "accepted: %" in parsed.detail


def test_numbers_beyond_64_bits_are_rejected_not_crashed() -> None:
    parsed = parse(message().replace(b"95", b"1" + b"0" * 30))
    assert isinstance(parsed, Rejection)


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    assert isinstance(parse(payload), DeviceMessage | Rejection)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON)
def test_arbitrary_json_never_raises(doc: object) -> None:
    assert isinstance(parse(json.dumps(doc).encode()), DeviceMessage | Rejection)


@given(
    st.sampled_from(sorted(CATALOGUE)),
    st.data(),
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2026, 11, 22), timezones=st.just(UTC)
    ),
)
def test_valid_messages_round_trip(metric: str, data: st.DataObject, at: datetime) -> None:
    spec = CATALOGUE[metric]
    low, high = spec.plausible
    value = data.draw(st.floats(min_value=low, max_value=high))
    parsed = parse(
        message(
            measured_at=at.isoformat(),
            readings=[{"metric": metric, "value": value, "unit": spec.unit}],
        )
    )
    assert isinstance(parsed, DeviceMessage)
    assert parsed.measured_at == at
    assert parsed.readings[0].value == value
    assert parsed.readings[0].flags == ()


# Times at every edge: what is accepted is storable, what is not is refused with a reason.
TIMES: list[tuple[str, datetime | None]] = [
    ("0001-01-01T00:00:00+14:00", None),  # before year 1 in UTC: out of every range
    ("9999-12-31T23:59:59-14:00", None),  # after year 9999 in UTC
    ("0001-01-01T00:00:00-14:00", datetime(1, 1, 1, 14, tzinfo=UTC)),
    ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ("2026-11-22T09:00:00+01:00", datetime(2026, 11, 22, 8, tzinfo=UTC)),
    ("2026-11-22t08:00:00z", datetime(2026, 11, 22, 8, tzinfo=UTC)),
    ("2026-11-22T08:00:00.123456789Z", datetime(2026, 11, 22, 8, 0, 0, 123456, tzinfo=UTC)),
    ("2026-11-22T08:00:00+23:59", datetime(2026, 11, 21, 8, 1, tzinfo=UTC)),
    ("2026-11-22T08:00:00+24:00", None),
    ("2026-11-22T08:00:00+05:60", None),
    ("2026-11-22T08:00:00+01:30:15", None),  # offsets in seconds: not RFC 3339
    ("2016-12-31T23:59:60Z", None),  # a leap second Python and PostgreSQL cannot hold
    ("2026-11-22T24:00:00Z", None),
    ("2026-02-30T08:00:00Z", None),
    ("0000-01-01T00:00:00Z", None),
    ("2026-W47-7T08:00:00Z", None),  # ISO 8601 week date
    ("20261122T080000Z", None),  # ISO 8601 basic format
    ("2026-11-22 08:00:00Z", None),
    ("2026-11-22T08:00:00,5Z", None),
    ("2026-11-22T08:00Z", None),
    ("+2026-11-22T08:00:00Z", None),
    ("２０２６-11-22T08:00:00Z", None),  # fullwidth digits match \\d in Python
]


@pytest.mark.parametrize(("text", "expected"), TIMES)
def test_times_at_every_edge(text: str, expected: datetime | None) -> None:
    parsed = parse_measured_at(text)
    if expected is None:
        assert isinstance(parsed, str)
        assert "measured_at" in parsed
    else:
        assert parsed == expected


@given(st.text(max_size=40))
def test_any_text_is_a_utc_time_or_a_reason(text: str) -> None:
    parsed = parse_measured_at(text)
    assert isinstance(parsed, str) or (parsed.tzinfo is UTC and 1 <= parsed.year <= 9999)


@pytest.mark.parametrize(
    ("battery", "stored"), [(1e-300, 0.0), (5e-324, 0.0), (99.96, 100.0), (42.04, 42.0), (0, 0)]
)
def test_battery_is_kept_to_a_tenth_so_postgresql_real_can_hold_it(
    battery: float, stored: float
) -> None:
    parsed = parse(message(battery=battery))
    assert isinstance(parsed, DeviceMessage)
    assert parsed.battery == stored


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"device_seq": MAX_DEVICE_SEQ}, True),
        ({"device_seq": MAX_DEVICE_SEQ + 1}, False),
        ({"battery": 1e300}, False),
        ({"readings": [{"metric": "spo2", "value": 5e-324, "unit": "%"}]}, True),
        ({"readings": [{"metric": "spo2", "value": 1.7976931348623157e308, "unit": "%"}]}, False),
        ({"msg_id": "\U0001f4a5" * 128}, True),
        ({"msg_id": "x" * 129}, False),
        ({"firmware": "x" * 65}, False),
    ],
)
def test_numbers_and_strings_at_their_edges(fields: dict[str, Any], ok: bool) -> None:
    parsed = parse(message(**fields))
    assert isinstance(parsed, DeviceMessage) is ok, parsed


def test_a_repeated_key_is_refused_at_any_depth() -> None:
    now = datetime.now(UTC)
    at = now.isoformat()
    for payload in (
        b'{"msg_id": "a", "msg_id": "b", "measured_at": "' + at.encode() + b'", "readings": []}',
        b'{"msg_id": "a", "measured_at": "' + at.encode() + b'", "readings":'
        b' [{"metric": "spo2", "value": 97, "unit": "%", "value": 84}]}',
        # a backslash (a quote may hide in a string): the exact check decides
        b'{"msg_id": "a\\"", "measured_at": "' + at.encode() + b'", "readings":'
        b' [{"metric": "spo2", "value": 97, "unit" : "%", "unit": "%"}]}',
    ):
        result = parse_reading_message(
            "homeward/v1/devices/ox-1/readings", payload, retained=False, now=now
        )
        assert isinstance(result, Rejection)
        assert result.reason is RejectReason.AMBIGUOUS_JSON


@given(
    st.recursive(
        st.none() | st.integers(-1000, 1000) | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=8,
    )
)
def test_the_fast_repeated_key_test_never_misses_one(value: Any) -> None:
    """Whatever a document holds, doubling a key of one of its objects is caught."""
    text = orjson.dumps({"k": value, "z": 1})
    doubled = text[:-1] + b',"z":2}'
    assert not may_repeat_a_key(text, orjson.loads(text)) or repeated_key(text) is None
    assert may_repeat_a_key(doubled, orjson.loads(doubled))
    assert repeated_key(doubled) == "z"
