"""Device activity — last message, battery, firmware, status — noted as messages arrive
and written to ``devices`` inside the batch transactions, a bounded number at a time.

Every ``every_s`` seconds the devices noted since the last round become due; each batch
then takes at most ``chunk`` of them, oldest-noted first, until the round is written.
A device noted again while it waits is written once, with its newest activity; one
noted after it was taken waits for the next round. One UPDATE of every device at once
held the batch it rode on for about 170 ms with 10,000 devices (docs/performance.md):
spread over the batches that follow, no batch carries more than ``chunk`` rows of it.

Pure bookkeeping with an injectable clock; the SQL is ``touch_devices`` in writer.sql.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

ACTIVITY_EVERY_S = 5.0
ACTIVITY_CHUNK = 256


@dataclass(frozen=True, slots=True)
class DeviceActivity:
    last_msg_at: datetime
    battery: float | None = None
    firmware: str | None = None
    status: str | None = None
    status_at: datetime | None = None


class ActivityBuffer:
    def __init__(
        self,
        every_s: float = ACTIVITY_EVERY_S,
        chunk: int = ACTIVITY_CHUNK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        self._every_s = every_s
        self._chunk = chunk
        self._clock = clock
        self._noted: dict[str, DeviceActivity] = {}  # insertion order: oldest-noted first
        self._due = 0  # how many of the oldest-noted belong to the round being written
        self._round_at = -float("inf")

    def __len__(self) -> int:
        return len(self._noted)

    def note_message(
        self, device_id: str, at: datetime, battery: float | None, firmware: str | None
    ) -> None:
        current = self._noted.get(device_id)
        if current is None:
            self._noted[device_id] = DeviceActivity(at, battery, firmware)
        elif current.last_msg_at < at:
            self._noted[device_id] = replace(
                current,
                last_msg_at=at,
                battery=current.battery if battery is None else battery,
                firmware=current.firmware if firmware is None else firmware,
            )

    def note_status(self, device_id: str, at: datetime, status: str, battery: float | None) -> None:
        current = self._noted.get(device_id) or DeviceActivity(last_msg_at=at)
        self._noted[device_id] = replace(
            current,
            status=status,
            status_at=at,
            battery=current.battery if battery is None else battery,
        )

    def take(self) -> dict[str, DeviceActivity] | None:
        """What the next batch writes: ``None``, or at most ``chunk`` devices."""
        if not self._due:
            now = self._clock()
            if not self._noted or now - self._round_at < self._every_s:
                return None
            self._round_at = now
            self._due = len(self._noted)
        ids = list(itertools.islice(self._noted, min(self._chunk, self._due)))
        self._due -= len(ids)
        return {device_id: self._noted.pop(device_id) for device_id in ids}
