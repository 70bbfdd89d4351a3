"""The bad device payloads docs/payload.md lists, with the quarantine reason each gets —
shared by the MQTT quarantine tests and the HTTP ingest tests (the same reasons on both
doors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

OTHER = "4010232137"  # a valid NHS number of another patient


def now_iso(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


def doc(**fields: object) -> bytes:
    base: dict[str, object] = {
        "msg_id": "m",
        "measured_at": now_iso(),
        "readings": [{"metric": "spo2", "value": 95, "unit": "%"}],
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


def one(metric: str, value: object, unit: str) -> list[dict[str, object]]:
    return [{"metric": metric, "value": value, "unit": unit}]


# (label, device, payload, retained, expected reason) — the categories of docs/references.md.
BAD: list[tuple[str, str, bytes, bool, str]] = [
    ("not JSON", "ox-1", b"spo2=95", False, "malformed_json"),
    ("truncated", "ox-1", doc(msg_id="t1")[:-7], False, "malformed_json"),
    ("not UTF-8", "ox-1", b'{"msg_id": "\xff\xfe"}', False, "not_utf8"),
    (
        "NaN",
        "ox-1",
        b'{"msg_id":"n1","measured_at":"'
        + now_iso().encode()
        + b'","readings":[{"metric":"spo2","value":NaN,"unit":"%"}]}',
        False,
        "malformed_json",
    ),
    ("JSON array", "ox-1", b"[1, 2, 3]", False, "schema"),
    ("missing msg_id", "ox-1", doc(msg_id=None), False, "schema"),
    (
        "value is a string",
        "ox-1",
        doc(msg_id="s1", readings=one("spo2", "95", "%")),
        False,
        "schema",
    ),
    ("value is a bool", "ox-1", doc(msg_id="s2", readings=one("spo2", True, "%")), False, "schema"),
    (
        "missing unit",
        "ox-1",
        doc(msg_id="s3", readings=[{"metric": "spo2", "value": 95}]),
        False,
        "schema",
    ),
    ("no readings", "ox-1", doc(msg_id="s4", readings=[]), False, "schema"),
    ("unknown field", "ox-1", doc(msg_id="s5", colour="blue"), False, "schema"),
    ("no time zone", "ox-1", doc(msg_id="s6", measured_at="2026-11-22T08:14:05"), False, "schema"),
    (
        "bad consciousness",
        "ox-1",
        doc(msg_id="s7", context={"consciousness": "X"}),
        False,
        "schema",
    ),
    (
        "deeply nested",
        "ox-1",
        doc(msg_id="s8", context={"a": [[[[[[[[[[1]]]]]]]]]]}),
        False,
        "schema",
    ),
    ("bad patient id", "ox-1", doc(msg_id="s9", patient_id="9434765918"), False, "schema"),
    (
        "unknown metric",
        "ox-1",
        doc(msg_id="u1", readings=one("ketones", 1.0, "mmol/L")),
        False,
        "unknown_metric",
    ),
    (
        "unknown unit",
        "ox-1",
        doc(msg_id="u2", readings=one("body_weight", 80, "lbs")),
        False,
        "unknown_unit",
    ),
    (
        "unit for another metric",
        "ox-1",
        doc(msg_id="u3", readings=one("spo2", 95, "mmol/L")),
        False,
        "unknown_unit",
    ),
    (
        "impossible value",
        "ox-1",
        doc(msg_id="i1", readings=one("spo2", 140, "%")),
        False,
        "impossible_value",
    ),
    (
        "negative heart rate",
        "ox-1",
        doc(msg_id="i2", readings=one("heart_rate", -5, "/min")),
        False,
        "impossible_value",
    ),
    ("far future", "ox-1", doc(msg_id="f1", measured_at=now_iso(3600)), False, "future_timestamp"),
    ("NUL in text", "ox-1", doc(msg_id="nul\u0000"), False, "unstorable_text"),
    ("oversized", "ox-1", doc(msg_id="big", firmware="x" * 20_000), False, "oversized"),
    ("retained reading", "ox-1", doc(msg_id="r1"), True, "retained"),
    ("unknown device", "ghost-1", doc(msg_id="g1"), False, "unknown_device"),
    (
        "names another patient",
        "ox-1",
        doc(msg_id="p1", patient_id=OTHER),
        False,
        "patient_mismatch",
    ),
]
