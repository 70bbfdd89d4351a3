"""Device status messages: ``{root}/devices/{id}/status``, retained, set by the device
(``online``) and by its last will (``offline``). Plain text or JSON
``{"status": "online"|"offline", "battery": 0-100}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

STATUSES = frozenset({"online", "offline"})


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    device_id: str
    status: str
    battery: float | None = None


def parse_status_message(topic: str, payload: bytes, topic_root: str) -> StatusUpdate | None:
    """The update a status message carries, or ``None`` when it is not one we understand."""
    prefix = f"{topic_root}/devices/"
    if not (topic.startswith(prefix) and topic.endswith("/status")):
        return None
    device_id = topic[len(prefix) : -len("/status")]
    if not device_id or "/" in device_id:
        return None
    text = payload.strip()
    if text.lower().decode("utf-8", "replace") in STATUSES:
        return StatusUpdate(device_id, text.lower().decode())
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("status") not in STATUSES:
        return None
    battery = doc.get("battery")
    if not isinstance(battery, int | float) or isinstance(battery, bool):
        battery = None
    return StatusUpdate(device_id, str(doc["status"]), battery)
