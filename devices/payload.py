"""Reading payload v1: bytes from MQTT → a frozen :class:`DeviceMessage` or a :class:`Rejection`.

Pure: the clock is a parameter, nothing is read or written. Every input maps to one of
the two results — the function never raises — so a poison message can never stop the
stream; rejections carry a stable reason code and a detail a person can act on.
The JSON Schema of the contract is ``docs/payload.schema.json``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devices.units import classify, to_canonical
from homeward.domain import (
    Consciousness,
    DeviceMessage,
    MessageContext,
    Reading,
    Rejection,
    RejectReason,
)
from homeward.errors import InvalidNhsNumber, UnitError
from homeward.metrics import CATALOGUE, IMPLAUSIBLE_FLAG
from homeward.nhs import normalise_nhs_number

DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_READINGS = 32


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ReadingIn(_Strict):
    metric: str = Field(min_length=1, max_length=64)
    value: float
    unit: str = Field(min_length=1, max_length=32)
    flags: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=16)


class ContextIn(_Strict):
    on_oxygen: bool | None = None
    consciousness: Literal["A", "C", "V", "P", "U"] | None = None
    at_rest: bool | None = None


class MessageIn(_Strict):
    """The payload as published (contract v1)."""

    msg_id: str = Field(min_length=1, max_length=128)
    measured_at: str = Field(min_length=10, max_length=40)
    readings: list[ReadingIn] = Field(min_length=1, max_length=MAX_READINGS)
    device_seq: int | None = Field(default=None, ge=0)
    battery: float | None = Field(default=None, ge=0, le=100)
    firmware: str | None = Field(default=None, max_length=64)
    context: ContextIn | None = None
    patient_id: str | None = Field(default=None, max_length=16)


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_measured_at(text: str) -> datetime | str:
    """A UTC datetime, or the reason the text is not an RFC 3339 time with an offset."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return f"measured_at {text!r} is not an RFC 3339 date-time"
    if "T" not in text.upper():
        return f"measured_at {text!r} has no time of day"
    if parsed.tzinfo is None:
        return f"measured_at {text!r} has no time zone offset"
    return parsed.astimezone(UTC)


def parse_reading_message(
    topic: str,
    payload: bytes,
    *,
    retained: bool,
    now: datetime,
    max_payload_bytes: int = 16_384,
    future_tolerance_s: int = 300,
    topic_root: str = "homeward/v1",
) -> DeviceMessage | Rejection:
    prefix = f"{topic_root}/devices/"
    device_id = topic[len(prefix) : -len("/readings")] if topic.endswith("/readings") else ""
    if not topic.startswith(prefix) or not DEVICE_ID.fullmatch(device_id):
        return Rejection(
            RejectReason.BAD_TOPIC, f"not a readings topic: {topic[:200]!r}", None, None
        )
    if retained:
        return Rejection(
            RejectReason.RETAINED,
            "retained message on a readings topic (readings must not be retained)",
            device_id,
        )
    if len(payload) > max_payload_bytes:
        return Rejection(
            RejectReason.OVERSIZED,
            f"payload of {len(payload)} bytes exceeds the limit of {max_payload_bytes}",
            device_id,
        )
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as utf:
            return Rejection(RejectReason.NOT_UTF8, f"payload is not UTF-8: {utf}", device_id)
        return Rejection(RejectReason.MALFORMED_JSON, f"payload is not JSON: {exc}", device_id)
    msg_id = doc.get("msg_id") if isinstance(doc, dict) else None
    msg_id = msg_id if isinstance(msg_id, str) and len(msg_id) <= 128 else None
    if b"\\u0000" in payload:
        return Rejection(
            RejectReason.UNSTORABLE_TEXT,
            "payload contains a NUL character (\\u0000)",
            device_id,
            msg_id,
        )
    if not isinstance(doc, dict):
        return Rejection(
            RejectReason.SCHEMA,
            f"payload must be a JSON object, got {type(doc).__name__}",
            device_id,
            msg_id,
        )
    try:
        message = MessageIn.model_validate(doc)
    except ValidationError as exc:
        return Rejection(RejectReason.SCHEMA, _describe(exc), device_id, msg_id)
    return _to_domain(message, device_id, now, future_tolerance_s)


def _to_domain(
    message: MessageIn, device_id: str, now: datetime, future_tolerance_s: int
) -> DeviceMessage | Rejection:
    msg_id = message.msg_id

    def reject(reason: RejectReason, detail: str) -> Rejection:
        return Rejection(reason, detail, device_id, msg_id)

    measured_at = parse_measured_at(message.measured_at)
    if isinstance(measured_at, str):
        return reject(RejectReason.SCHEMA, measured_at)
    if measured_at - now > timedelta(seconds=future_tolerance_s):
        return reject(
            RejectReason.FUTURE_TIMESTAMP,
            f"measured_at {message.measured_at} is more than {future_tolerance_s} s after "
            f"the time it arrived ({now.isoformat(timespec='seconds')}); check the device clock",
        )
    patient: str | None = None
    if message.patient_id is not None:
        try:
            patient = normalise_nhs_number(message.patient_id)
        except InvalidNhsNumber as exc:
            return reject(RejectReason.SCHEMA, f"patient_id: {exc}")
    readings: list[Reading] = []
    seen: set[str] = set()
    for item in message.readings:
        if item.metric not in CATALOGUE:
            return reject(
                RejectReason.UNKNOWN_METRIC,
                f"unknown metric {item.metric!r}; known: {', '.join(CATALOGUE)}",
            )
        if item.metric in seen:
            return reject(RejectReason.SCHEMA, f"metric {item.metric} appears twice")
        seen.add(item.metric)
        if not math.isfinite(item.value):
            return reject(RejectReason.SCHEMA, f"{item.metric}: value is not a finite number")
        try:
            value = to_canonical(item.metric, item.value, item.unit)
        except UnitError as exc:
            return reject(RejectReason.UNKNOWN_UNIT, str(exc))
        spec = CATALOGUE[item.metric]
        verdict = classify(item.metric, value)
        if verdict == "impossible":
            low, high = spec.possible
            return reject(
                RejectReason.IMPOSSIBLE_VALUE,
                f"{item.metric} {item.value} {item.unit} (= {value:.4g} {spec.unit}) is outside "
                f"the possible range {low}–{high} {spec.unit}",
            )
        flags = (*item.flags, IMPLAUSIBLE_FLAG) if verdict == "implausible" else tuple(item.flags)
        readings.append(Reading(item.metric, value, spec.unit, tuple(flags)))
    ctx = message.context
    context = (
        MessageContext(
            on_oxygen=ctx.on_oxygen,
            consciousness=Consciousness(ctx.consciousness) if ctx.consciousness else None,
            at_rest=ctx.at_rest,
        )
        if ctx is not None
        else MessageContext()
    )
    return DeviceMessage(
        device_id=device_id,
        msg_id=msg_id,
        measured_at=measured_at,
        readings=tuple(readings),
        context=context,
        device_seq=message.device_seq,
        battery=message.battery,
        firmware=message.firmware,
        patient_nhs_number=patient,
    )
