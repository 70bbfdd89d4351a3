"""How many audit rows an unauthenticated client may cause: a pure, fixed-window limit.

Every request without a valid token is audited (``authenticate``, refused), but a
client sending thousands would fill the table. Per client address, the first
:data:`ROWS_PER_WINDOW` refusals of each :data:`WINDOW_S` window are written in full;
the rest are counted, and the count is written too (``audit_dropped``: one row per
address and window, its ``dropped`` count raised in place), so nothing is silent and
the storage an attacker can fill grows with addresses and time, not with requests.
Addresses beyond :data:`MAX_ADDRESSES` in one window share one bucket (``*``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROWS_PER_WINDOW = 20
WINDOW_S = 60.0
MAX_ADDRESSES = 10_000
OVERFLOW = "*"


@dataclass(frozen=True, slots=True)
class Verdict:
    audit: bool  # write the full audit row
    client: str  # the bucket counted (the address, or OVERFLOW)
    window_start: float  # the window's start, in the clock's seconds


@dataclass(slots=True)
class AnonymousAuditLimit:
    rows_per_window: int = ROWS_PER_WINDOW
    window_s: float = WINDOW_S
    max_addresses: int = MAX_ADDRESSES
    _window: float | None = None
    _counts: dict[str, int] = field(default_factory=dict)

    def decide(self, client: str, now: float) -> Verdict:
        """Whether this refusal is written in full; the caller counts it otherwise."""
        window = now - now % self.window_s
        if window != self._window:
            self._window, self._counts = window, {}
        if client not in self._counts and len(self._counts) >= self.max_addresses:
            client = OVERFLOW
        seen = self._counts.get(client, 0)
        self._counts[client] = seen + 1
        return Verdict(seen < self.rows_per_window, client, window)
