"""The ingest watchdog: is ingest making progress while messages wait?

Progress is a COMMIT of a batch. A queue that has waited longer than the limit since
the last COMMIT — or since work arrived after an idle spell, whichever is later — is a
stall: the database is down, slow or refusing, or the writer is stuck. ``/health``
reports it (``ingest.progress``) and answers 503 while it lasts, so one message that
stops ingest can never hide behind a service that still says "ok".

Pure bookkeeping with an injectable clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Progress:
    waiting: int  # messages queued or in the batch being written
    waiting_for_s: float  # since the last COMMIT, or since work arrived when idle
    stalled: bool
    last_commit_age_s: float | None  # None: nothing committed since start


class ProgressWatch:
    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stall_after_s = stall_after_s
        self._clock = clock
        self._since: float | None = None  # start of the current wait; None when idle
        self._last_commit: float | None = None

    def work_arrived(self) -> None:
        """A message was queued; starts the clock if ingest was idle."""
        if self._since is None:
            self._since = self._clock()

    def committed(self, still_waiting: bool) -> None:
        """A batch was stored and acknowledged; the clock restarts, or stops when idle."""
        now = self._clock()
        self._last_commit = now
        self._since = now if still_waiting else None

    def idle(self) -> None:
        """Nothing waits any more (the queue was dropped or emptied without a write)."""
        self._since = None

    def read(self, waiting: int) -> Progress:
        now = self._clock()
        since = self._since if waiting else None
        waited = 0.0 if since is None else now - since
        last = self._last_commit
        return Progress(
            waiting=waiting,
            waiting_for_s=round(waited, 3),
            stalled=waited > self._stall_after_s,
            last_commit_age_s=None if last is None else round(now - last, 3),
        )
