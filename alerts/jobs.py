"""The service's timers (APScheduler): adherence checks, escalation ticks, notification
delivery. Every job recomputes from the database and ``now``; nothing is kept between
runs, so a restarted process decides exactly as one that kept running."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from alerts import adherence, escalation_store, notify

log = logging.getLogger(__name__)


def _guarded(
    pool: AsyncConnectionPool,
    name: str,
    work: Callable[[psycopg.AsyncConnection[Any], datetime], Awaitable[Any]],
) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        try:
            async with pool.connection() as conn:
                result = await work(conn, datetime.now(UTC))
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("%s skipped, database unavailable: %s", name, exc)
            return
        except asyncio.CancelledError:
            # The service is stopping: what the run had not committed rolls back, and the
            # next start recomputes from the database.
            log.info("%s interrupted by shutdown; the next run recomputes", name)
            return
        if result:
            log.info("%s: %s", name, result)

    return job


def start_scheduler(
    pool: AsyncConnectionPool,
    *,
    adherence_interval_s: float,
    escalation_tick_s: float,
    senders: notify.Senders,
) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=UTC)
    now = datetime.now(UTC)
    if adherence_interval_s:
        scheduler.add_job(
            _guarded(pool, "adherence", adherence.check),
            "interval",
            seconds=adherence_interval_s,
            next_run_time=now + timedelta(seconds=adherence_interval_s),
            coalesce=True,
            max_instances=1,
            id="adherence",
        )
    if escalation_tick_s:

        async def escalate(conn: psycopg.AsyncConnection[Any], at: datetime) -> str | None:
            ticked = await escalation_store.tick(conn, at)
            sent, failed = await notify.deliver_due(conn, senders, at)
            if ticked.planned or ticked.expired or ticked.fired or sent or failed:
                return (
                    f"planned {ticked.planned}, acknowledgements expired {ticked.expired},"
                    f" steps fired {ticked.fired}, notifications sent {sent},"
                    f" failed {failed}"
                )
            return None

        scheduler.add_job(
            _guarded(pool, "escalation", escalate),
            "interval",
            seconds=escalation_tick_s,
            next_run_time=now,
            coalesce=True,
            max_instances=1,
            id="escalation",
        )
    scheduler.start()
    return scheduler
