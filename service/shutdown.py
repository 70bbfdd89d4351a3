"""A stop's time budget, and the report of what it left for the next start.

The budget, from the moment the service starts stopping (``stop_grace_s``, default 20 s):

* the timers start no new run; the runs in progress may finish while ingest drains, and
  are interrupted at the drain's end;
* ingest stores and acknowledges what it holds until ``reserve_s`` before the end;
* whatever is not stored by then is cancelled — its transaction rolls back and none of
  its messages is acknowledged, so the broker redelivers them at the next start;
* disconnecting, closing the HTTP server, the pool and the identity lock's connection
  share the reserve, each step bounded.

The process itself (commands/run_cmd.py) exits at the end of the grace period whatever
is still running, and at once on a second signal.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)
EXIT_MARGIN_S = 0.5  # left for the interpreter to exit before the grace period ends
STEP_S = 1.0


def reserve_s(grace_s: float) -> float:
    """Kept back from draining for the steps after it: 6 s, or 40 % of a short grace."""
    return min(6.0, 0.4 * grace_s)


class Deadline:
    def __init__(self, grace_s: float, *, now: float | None = None) -> None:
        self.began = time.monotonic() if now is None else now
        self.end = self.began + grace_s - EXIT_MARGIN_S
        self.drain_end = self.end - reserve_s(grace_s)

    def left_s(self, now: float | None = None) -> float:
        return max(0.0, self.end - (time.monotonic() if now is None else now))

    def drain_s(self, now: float | None = None) -> float:
        return max(0.0, self.drain_end - (time.monotonic() if now is None else now))

    def step_s(self, cap_s: float = STEP_S) -> float:
        """A step after the drain: at most ``cap_s``, never past the end (a step always
        gets a moment, so a close is at least tried)."""
        return max(0.05, min(cap_s, self.left_s()))

    def elapsed_s(self) -> float:
        return time.monotonic() - self.began


@dataclass(frozen=True, slots=True)
class StopReport:
    took_s: float
    stored: int  # readings stored since start
    acknowledged: int  # messages acknowledged since start
    unacknowledged: int  # received, not acknowledged: the broker redelivers them
    drained: bool  # everything held was stored and acknowledged in time
    interrupted: tuple[str, ...]  # timer runs cut short (their work rolled back)
    client_id: str

    def lines(self) -> list[str]:
        out = [
            f"stopped in {self.took_s:.1f} s: {self.stored} readings stored and"
            f" {self.acknowledged} messages acknowledged since start"
        ]
        if self.unacknowledged:
            how = "not stored in time" if not self.drained else "turned away while stopping"
            out.append(
                f"left {self.unacknowledged} messages unacknowledged ({how}): the broker"
                f" keeps them in session {self.client_id!r} and redelivers them at the next"
                " start"
            )
        for name in self.interrupted:
            out.append(
                f"{name} run interrupted: its uncommitted work rolled back; the next start"
                " recomputes it"
            )
        return out

    def log(self) -> None:
        first, *rest = self.lines()
        log.info("%s", first)
        for line in rest:
            log.warning("%s", line)
