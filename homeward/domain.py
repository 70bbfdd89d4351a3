"""Domain types shared by the parts. Frozen dataclasses: no I/O, no behaviour with side effects.

A device message (one MQTT publish) carries one or more readings taken at the same
instant. After validation each reading is canonical: its value is in the metric's
canonical UCUM unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Consciousness(StrEnum):
    """ACVPU scale as used by NEWS2."""

    ALERT = "A"
    NEW_CONFUSION = "C"
    VOICE = "V"
    PAIN = "P"
    UNRESPONSIVE = "U"


@dataclass(frozen=True, slots=True)
class Reading:
    """One canonical metric value: ``value`` is in the metric's canonical unit."""

    metric: str
    value: float
    unit: str
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageContext:
    """Non-numeric NEWS2 inputs and measurement context sent with a message."""

    on_oxygen: bool | None = None
    consciousness: Consciousness | None = None
    at_rest: bool | None = None


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    """A validated reading message from one device (payload contract v1)."""

    device_id: str
    msg_id: str
    measured_at: datetime  # timezone-aware, UTC
    readings: tuple[Reading, ...]
    context: MessageContext = field(default_factory=MessageContext)
    device_seq: int | None = None
    battery: float | None = None
    firmware: str | None = None
    patient_nhs_number: str | None = None  # optional claim in the payload; the binding wins


class RejectReason(StrEnum):
    """Why a message went to quarantine. Stable codes: operators filter on them."""

    OVERSIZED = "oversized"
    NOT_UTF8 = "not_utf8"
    MALFORMED_JSON = "malformed_json"
    SCHEMA = "schema"
    UNKNOWN_METRIC = "unknown_metric"
    UNKNOWN_UNIT = "unknown_unit"
    IMPOSSIBLE_VALUE = "impossible_value"
    FUTURE_TIMESTAMP = "future_timestamp"
    BAD_TOPIC = "bad_topic"
    RETAINED = "retained"
    UNKNOWN_DEVICE = "unknown_device"
    UNBOUND_DEVICE = "unbound_device"
    PATIENT_MISMATCH = "patient_mismatch"
    UNSTORABLE_TEXT = "unstorable_text"
    STORAGE_ERROR = "storage_error"
    PARSER_ERROR = "parser_error"
    RATE_LIMITED = "rate_limited"
    AMBIGUOUS_JSON = "ambiguous_json"  # e.g. a repeated key: parsers may read it differently
    CONFLICT = "conflict"  # same key as a stored reading, different value (security event)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that must be kept in quarantine, with a reason a person can act on."""

    reason: RejectReason
    detail: str
    device_id: str | None = None
    msg_id: str | None = None
