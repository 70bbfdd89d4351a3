"""Reading payload v1: bytes from MQTT → a frozen :class:`DeviceMessage` or a :class:`Rejection`.

Pure: the clock is a parameter, nothing is read or written. Every input maps to one of
the two results — the function never raises — so a poison message can never stop the
stream; rejections carry a stable reason code and a detail a person can act on.
The JSON Schema of the contract is ``docs/payload.schema.json``.
"""

from __future__ import annotations

import json
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
MAX_DEVICE_SEQ = 2**63 - 1  # PostgreSQL bigint


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
    device_seq: int | None = Field(default=None, ge=0, le=MAX_DEVICE_SEQ)
    battery: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    firmware: str | None = Field(default=None, max_length=64)
    context: ContextIn | None = None
    patient_id: str | None = Field(default=None, max_length=16)


class _RepeatedKeyError(ValueError):
    pass


def _refuse_repeated(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = next(k for k in keys if keys.count(k) > 1)
        raise _RepeatedKeyError(repeated)
    return dict(pairs)


_KEY_END = re.compile(rb'"\s*:')


def _keys(value: object) -> int:
    """How many keys the objects of a parsed document hold (a repeated one counts once)."""
    if isinstance(value, dict):
        return len(value) + sum(_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_keys(v) for v in value)
    return 0


def may_repeat_a_key(payload: bytes, doc: object) -> bool:
    """A fast test that is never wrong when it says no: without a backslash, no string
    can hold a quote, so every ``"`` followed by ``:`` ends a key; as many of those as
    the parsed objects hold keys means no key was repeated."""
    return b"\\" in payload or len(_KEY_END.findall(payload)) != _keys(doc)


def repeated_key(payload: bytes) -> str | None:
    """The first key repeated within one JSON object of ``payload``, if any. orjson (and
    most parsers) keep the last value of a repeated key, others the first: such a
    payload could mean two things, so it is refused (docs/payload.md)."""
    try:
        json.loads(payload, object_pairs_hook=_refuse_repeated)
    except _RepeatedKeyError as exc:
        return str(exc)
    except (ValueError, RecursionError):  # orjson accepted it; nothing repeated was found
        return None
    return None


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem of a validation error, where it is, and how many more."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def battery_percent(value: float | None) -> float | None:
    """A battery level as stored: to 0.1 %. The column is ``real``, which refuses a
    non-zero value below about 1e-45 (``1e-300`` would fail the whole batch)."""
    return None if value is None else round(value, 1)


# RFC 3339 section 5.6 date-time, nothing else of ISO 8601 (no week dates, no basic
# format, no comma, no offset in seconds); the offset is required.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # \d is 0-9 only, not every script's digits
)


def parse_measured_at(text: str) -> datetime | str:
    """A UTC datetime, or the reason the text is not an RFC 3339 time with an offset.

    Every value returned can be stored (PostgreSQL's ``timestamptz`` covers all of
    Python's years 1–9999): a local time whose UTC instant falls outside years 1–9999
    (``0001-01-01T00:00:00+14:00``) is refused here, not left to overflow later.
    Fractions beyond microseconds are truncated, as PostgreSQL would round them.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        if _RFC3339.fullmatch(text + "T00:00:00Z"):
            return f"measured_at {text!r} has no time of day"
        if _RFC3339.fullmatch(text + "Z"):
            return f"measured_at {text!r} has no time zone offset"
        return f"measured_at {text!r} is not an RFC 3339 date-time with an offset"
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zulu, sign, off_h, off_m = match.groups()[6:]
    if second == 60:
        return f"measured_at {text!r} is a leap second, which cannot be stored; send :59"
    if zulu is None and (int(off_h) > 23 or int(off_m) > 59):
        return f"measured_at {text!r} has an offset beyond ±23:59"
    offset = timedelta(0) if zulu else timedelta(hours=int(off_h), minutes=int(off_m))
    micros = int((fraction or ".")[1:7].ljust(6, "0"))
    try:
        local = datetime(year, month, day, hour, minute, second, micros)
        utc = local - offset if sign != "-" else local + offset
    except (ValueError, OverflowError) as exc:
        return f"measured_at {text!r} is not a valid date-time ({exc})"
    return utc.replace(tzinfo=UTC)


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
    if may_repeat_a_key(payload, doc) and (repeated := repeated_key(payload)) is not None:
        return Rejection(
            RejectReason.AMBIGUOUS_JSON,
            f"key {repeated[:64]!r} appears twice in one object: JSON parsers differ on "
            "which value counts, so the payload is not read",
            device_id,
            msg_id,
        )
    try:
        message = MessageIn.model_validate(doc)
    except ValidationError as exc:
        return Rejection(RejectReason.SCHEMA, describe_validation_error(exc), device_id, msg_id)
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
        battery=battery_percent(message.battery),
        firmware=message.firmware,
        patient_nhs_number=patient,
    )
