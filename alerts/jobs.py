"""The service's timers (APScheduler): adherence checks, escalation ticks, notification
delivery. Every job recomputes from the database and ``now``; nothing is kept between
runs, so a restarted process decides exactly as one that kept running.

Each timer keeps a record of its runs (:class:`TimerRecord`), and
:func:`timer_problem` (pure) judges it: a run that raised, a run in progress for longer
than the stall limit, or no run at all for longer than its interval and that limit — a
failing, hung or stopped timer is named by ``/health`` instead of being silent. A run
skipped because the database is away is not a timer problem (``/health`` names the
database then).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from alerts import adherence, escalation_store, notify
from homeward.db import rollups

log = logging.getLogger(__name__)
Work = Callable[[psycopg.AsyncConnection[Any], datetime], Awaitable[Any]]


@dataclass
class TimerRecord:
    """What a timer has done. Times are ``time.monotonic()`` seconds."""

    name: str
    interval_s: float
    scheduled_at: float
    runs: int = 0
    failures: int = 0  # consecutive runs that raised (reset by a run that completes)
    skipped: int = 0  # runs skipped because the database was unavailable
    overlapped: int = 0  # runs not started since the last start: the previous one still ran
    last_started: float | None = None
    last_completed: float | None = None
    running_since: float | None = None
    last_error: str | None = None


def timer_problem(record: TimerRecord, now: float, stall_s: float) -> str | None:
    """What is wrong with a timer at ``now``, or ``None`` when it keeps its promise."""
    if record.running_since is not None and now - record.running_since > stall_s:
        return f"a run has been in progress for {now - record.running_since:.0f} s"
    if record.failures:
        return f"its last {record.failures} run(s) failed: {record.last_error}"
    since = record.last_started if record.last_started is not None else record.scheduled_at
    if now - since > record.interval_s + stall_s:
        return f"no run for {now - since:.0f} s (due every {record.interval_s:g} s)"
    return None


class _QuietOverlaps(logging.Filter):
    """APScheduler warns at every tick a run is skipped because the previous one is still
    running; the record counts them, /health names the hung run and we log it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


class Timers:
    """The scheduler and its jobs, each run recorded; started once the service serves."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        adherence_interval_s: float,
        escalation_tick_s: float,
        senders: notify.Senders,
        stall_s: float,
        rollup_refresh_s: float = 0.0,
    ) -> None:
        self._pool = pool
        self._stall_s = stall_s
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._plan: list[tuple[str, float, Work, bool]] = []
        self._running: dict[str, asyncio.Task[Any]] = {}
        self.records: dict[str, TimerRecord] = {}
        if adherence_interval_s:
            self._plan.append(("adherence", adherence_interval_s, adherence.check, False))
        if rollup_refresh_s:
            self._plan.append(("rollups", rollup_refresh_s, rollups.refresh_dirty, False))
        if escalation_tick_s:

            async def escalate(conn: psycopg.AsyncConnection[Any], at: datetime) -> str | None:
                ticked = await escalation_store.tick(conn, at)
                sent, failed = await notify.deliver_due(conn, senders, at)
                if ticked.failed:  # the others escalated; this run is shown as failed
                    raise escalation_store.AlertsNotEscalated(ticked.failed)
                if ticked.planned or ticked.expired or ticked.fired or sent or failed:
                    return (
                        f"planned {ticked.planned}, acknowledgements expired {ticked.expired},"
                        f" steps fired {ticked.fired}, current level told again"
                        f" {ticked.renotified}, notifications sent {sent}, failed {failed}"
                    )
                return None

            self._plan.append(("escalation", escalation_tick_s, escalate, True))

    def start(self) -> None:
        now = datetime.now(UTC)
        for name, interval_s, work, at_once in self._plan:
            self.records[name] = TimerRecord(name, interval_s, time.monotonic())
            self._scheduler.add_job(
                self._job(self.records[name], work),
                "interval",
                seconds=interval_s,
                next_run_time=now if at_once else now + timedelta(seconds=interval_s),
                coalesce=True,
                max_instances=1,
                id=name,
            )
        self._scheduler.add_listener(self._overlapped, EVENT_JOB_MAX_INSTANCES)
        scheduler_log = logging.getLogger("apscheduler.scheduler")
        if not any(isinstance(f, _QuietOverlaps) for f in scheduler_log.filters):
            scheduler_log.addFilter(_QuietOverlaps())
        self._scheduler.start()

    def _overlapped(self, event: JobSubmissionEvent) -> None:
        record = self.records[event.job_id]
        record.overlapped += 1
        if record.running_since is not None and record.overlapped == 1:
            log.warning(
                "%s: the run started %.0f s ago is still in progress; later runs wait for it",
                record.name,
                time.monotonic() - record.running_since,
            )

    async def stop(self, timeout_s: float) -> list[str]:
        """Schedule nothing more; let the runs in progress finish for at most
        ``timeout_s``, then interrupt them (what they had not committed rolls back; the
        next start recomputes it). Returns the names of the runs that were interrupted."""
        if self._scheduler.running:
            self._scheduler.pause()  # no new run; the ones in progress carry on
        running = dict(self._running)
        pending: set[asyncio.Task[Any]] = set()
        if running:
            _, pending = await asyncio.wait(running.values(), timeout=max(timeout_s, 0.01))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=0.5)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        return sorted(name for name, task in running.items() if task in pending)

    def problems(self, now: float | None = None) -> dict[str, str]:
        at = time.monotonic() if now is None else now
        found = {name: timer_problem(r, at, self._stall_s) for name, r in self.records.items()}
        return {name: problem for name, problem in found.items() if problem}

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        problems = self.problems(now)

        def age(at: float | None) -> float | None:
            return None if at is None else round(now - at, 3)

        return {
            name: {
                "ok": name not in problems,
                "problem": problems.get(name),
                "interval_s": r.interval_s,
                "runs": r.runs,
                "failures": r.failures,
                "skipped_database_unavailable": r.skipped,
                "skipped_still_running": r.overlapped,
                "last_started_s_ago": age(r.last_started),
                "last_completed_s_ago": age(r.last_completed),
                "running_for_s": age(r.running_since),
                "last_error": r.last_error,
            }
            for name, r in self.records.items()
        }

    def _job(self, record: TimerRecord, work: Work) -> Callable[[], Awaitable[None]]:
        name = record.name

        async def job() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running[name] = task
            record.runs += 1
            record.overlapped = 0
            record.last_started = record.running_since = time.monotonic()
            try:
                async with self._pool.connection() as conn:
                    result = await work(conn, datetime.now(UTC))
            except (psycopg.OperationalError, PoolTimeout) as exc:
                record.skipped += 1
                log.warning("%s skipped, database unavailable: %s", name, exc)
                return
            except asyncio.CancelledError:
                # The service is stopping: what the run had not committed rolls back, and
                # the next start recomputes from the database.
                log.info("%s interrupted by shutdown; the next run recomputes", name)
                return
            except Exception as exc:  # a bug or a refused statement: visible, retried
                record.failures += 1
                record.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("%s run failed (%d in a row)", name, record.failures)
                return
            finally:
                record.running_since = None
                self._running.pop(name, None)
            if record.failures:
                log.info("%s runs again after %d failed run(s)", name, record.failures)
            record.failures, record.last_error = 0, None
            record.last_completed = time.monotonic()
            if result:
                log.info("%s: %s", name, result)

        return job
