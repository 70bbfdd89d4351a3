"""Device status messages: ``{root}/devices/{id}/status``, retained, set by the device
(``online``) and by its last will (``offline``). Plain text ``online``/``offline`` or
JSON ``{"status": "online"|"offline", "battery": 0-100}``.

Validated like readings (pure, never raises): a status that is not one of these — an
unknown word, a battery out of range or not a number, an unknown field, more than
``STATUS_MAX_BYTES`` — is a :class:`Rejection` and goes to quarantine; it never reaches
the ``devices`` row. An empty payload is how a retained status is cleared: nothing to
record (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devices.payload import DEVICE_ID, battery_percent, describe_validation_error
from homeward.domain import Rejection, RejectReason

STATUSES = frozenset({"online", "offline"})
STATUS_MAX_BYTES = 1024


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    device_id: str
    status: str
    battery: float | None = None


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    status: Literal["online", "offline"]
    battery: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)


def status_device(topic: str, topic_root: str) -> str | None:
    """The device id of a status topic, or ``None`` when it is not one."""
    prefix = f"{topic_root}/devices/"
    if not (topic.startswith(prefix) and topic.endswith("/status")):
        return None
    device_id = topic[len(prefix) : -len("/status")]
    return device_id if DEVICE_ID.fullmatch(device_id) else None


def parse_status_message(
    topic: str, payload: bytes, topic_root: str
) -> StatusUpdate | Rejection | None:
    """The update a status message carries, a rejection, or ``None`` (a cleared status)."""
    device_id = status_device(topic, topic_root)
    if device_id is None:
        return Rejection(RejectReason.BAD_TOPIC, f"not a status topic: {topic[:200]!r}")

    def reject(reason: RejectReason, detail: str) -> Rejection:
        return Rejection(reason, detail, device_id)

    if not payload:
        return None
    if len(payload) > STATUS_MAX_BYTES:
        return reject(
            RejectReason.OVERSIZED,
            f"status of {len(payload)} bytes exceeds the limit of {STATUS_MAX_BYTES}",
        )
    word = payload.strip().lower()
    if word in (b"online", b"offline"):
        return StatusUpdate(device_id, word.decode())
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as utf:
            return reject(RejectReason.NOT_UTF8, f"status is not UTF-8: {utf}")
        return reject(
            RejectReason.MALFORMED_JSON,
            'a status message must be "online", "offline" or {"status": ...}',
        )
    if not isinstance(doc, dict):
        return reject(
            RejectReason.SCHEMA, f"status must be a word or a JSON object, got {type(doc).__name__}"
        )
    try:
        status = StatusIn.model_validate(doc)
    except ValidationError as exc:
        return reject(RejectReason.SCHEMA, f"status {describe_validation_error(exc)}")
    return StatusUpdate(device_id, status.status, battery_percent(status.battery))
