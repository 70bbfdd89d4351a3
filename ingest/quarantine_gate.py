"""What quarantine keeps of a rejected message, and how much of it per device.

Quarantine is storage an attacker can fill: a device may publish up to the broker's
packet limit, as fast as the broker lets it. So

* a row keeps the payload's size, the SHA-256 of the whole payload and at most
  ``keep_bytes`` of its start (:func:`kept_payload`);
* each device (or topic, when there is no device id) may add ``per_minute`` rows a
  minute, with a burst of as many (a token bucket). A rejection beyond that is not
  kept as a row of its own: it is counted here (``/health``: ``ingest.quarantine``)
  and in one ``rate_limited`` row per topic whose ``times_seen`` grows by the number
  not kept, so nothing is dropped silently.

Each message is judged once, however often its batch is written (a retry while the
database is away, the halves of a refused batch): the verdict is remembered until the
batch is acknowledged (:meth:`QuarantineGate.settle`).

Pure bookkeeping with an injectable clock.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

MAX_TRACKED = 10_000  # buckets kept; full ones are forgotten first
TOP_DEVICES = 20  # devices listed on /health with what they had dropped


@dataclass(frozen=True, slots=True)
class KeptPayload:
    prefix: bytes
    size: int
    sha256: bytes


def kept_payload(payload: bytes, keep_bytes: int) -> KeptPayload:
    return KeptPayload(payload[:keep_bytes], len(payload), hashlib.sha256(payload).digest())


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class QuarantineStats:
    kept: int = 0  # rows offered to quarantine
    rate_limited: int = 0  # rejections not kept as rows of their own (counted instead)
    by_source: dict[str, int] = field(default_factory=dict)

    def top(self) -> dict[str, int]:
        ranked = sorted(self.by_source.items(), key=lambda kv: (-kv[1], kv[0]))
        return dict(ranked[:TOP_DEVICES])


class QuarantineGate:
    def __init__(
        self, per_minute: int, keep_bytes: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self.keep_bytes = keep_bytes
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._verdicts: dict[int, bool] = {}
        self.stats = QuarantineStats()

    def admit(self, source: str, token: int) -> bool:
        """Whether the rejection ``token`` (one message) from ``source`` gets a row."""
        verdict = self._verdicts.get(token)
        if verdict is None:
            verdict = self._take(source)
            self._verdicts[token] = verdict
            if verdict:
                self.stats.kept += 1
            else:
                self.stats.rate_limited += 1
                self.stats.by_source[source] = self.stats.by_source.get(source, 0) + 1
        return verdict

    def settle(self, tokens: Iterable[int]) -> None:
        """The batch these messages were in is stored: forget their verdicts."""
        for token in tokens:
            self._verdicts.pop(token, None)

    def _take(self, source: str) -> bool:
        now = self._clock()
        burst = float(self.per_minute)
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._forget_full(now)
            bucket = self._buckets[source] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * self.per_minute / 60.0)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def _forget_full(self, now: float) -> None:
        """A full bucket is the same as none: drop those (at worst, the oldest half)."""
        rate = self.per_minute / 60.0
        full = [
            s for s, b in self._buckets.items() if b.tokens + (now - b.at) * rate >= self.per_minute
        ]
        for source in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[source]
