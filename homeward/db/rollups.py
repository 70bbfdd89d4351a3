"""Refreshing the rollups' dirty buckets (TimescaleDB; migration 0011 explains the design).

``readings_hourly``/``readings_daily`` already equal the raw readings at every moment —
a dirty bucket is aggregated from the raw readings when read. This pass keeps that cheap:
it refreshes the continuous aggregate over each dirty bucket (one call per bucket time,
for every patient at once) and then clears exactly the dirty rows it read, matching their
``seq``: a reading written meanwhile bumped the ``seq`` (or still holds the row's lock,
and the DELETE waits for its commit and then sees the new ``seq``), so its bucket stays
dirty for the next pass. On plain PostgreSQL there is nothing to do.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg

BATCH = 5_000  # dirty rows handled per pass, oldest bucket first
_CA = {
    "hourly": ("readings_hourly_ca", timedelta(hours=1)),
    "daily": ("readings_daily_ca", timedelta(days=1)),
}


async def refresh_dirty(conn: psycopg.AsyncConnection[Any], now: datetime | None = None) -> int:
    """One pass; returns the number of dirty rows cleared (0 on plain PostgreSQL)."""
    del now  # the pass depends on the dirty rows only
    cur = await conn.execute("SELECT to_regclass('rollup_dirty') IS NOT NULL")
    row = await cur.fetchone()
    await conn.commit()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute(
        "SELECT view, patient_id, metric, bucket, seq FROM rollup_dirty ORDER BY bucket LIMIT %s",
        (BATCH,),
    )
    dirty = await cur.fetchall()
    await conn.commit()
    if not dirty:
        return 0
    buckets: dict[str, set[datetime]] = defaultdict(set)
    for view, _pid, _metric, bucket, _seq in dirty:
        buckets[view].add(bucket)
    busy: set[tuple[str, datetime]] = set()
    autocommit = conn.autocommit
    await conn.set_autocommit(True)  # refresh_continuous_aggregate refuses a transaction
    try:
        for view, starts in buckets.items():
            name, width = _CA[view]
            for start in sorted(starts):
                try:
                    await conn.execute(
                        "CALL refresh_continuous_aggregate(%s::regclass, %s, %s)",
                        (name, start, start + width),
                    )
                except psycopg.errors.LockNotAvailable:
                    # a policy job refreshes an overlapping window: this bucket stays
                    # dirty (and exact) until the next pass
                    busy.add((view, start))
    finally:
        await conn.set_autocommit(autocommit)
    dirty = [row for row in dirty if (row[0], row[3]) not in busy]
    if not dirty:
        return 0
    cur = await conn.execute(
        "DELETE FROM rollup_dirty d"
        " USING unnest(%s::text[], %s::int[], %s::text[], %s::timestamptz[], %s::bigint[])"
        "   AS done (view, patient_id, metric, bucket, seq)"
        " WHERE (d.view, d.patient_id, d.metric, d.bucket, d.seq)"
        "     = (done.view, done.patient_id, done.metric, done.bucket, done.seq)",
        [list(column) for column in zip(*dirty, strict=True)],
    )
    cleared = cur.rowcount
    await conn.commit()
    return cleared


def _tracked(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('rollup_dirty') IS NOT NULL").fetchone()
    return bool(row and row[0])


@contextlib.contextmanager
def bulk_load(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Set-up and maintenance only, with nothing else writing readings (an autocommit
    connection): load without marking buckets one reading at a time, then refresh both
    continuous aggregates over all time and start with no dirty bucket."""
    tracked = _tracked(conn)
    if tracked:
        conn.execute("ALTER TABLE readings DISABLE TRIGGER readings_rollups_dirty")
    try:
        yield
    finally:
        if tracked:
            conn.execute("ALTER TABLE readings ENABLE TRIGGER readings_rollups_dirty")
    if tracked:
        for name, _width in _CA.values():
            conn.execute("CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", (name,))
        conn.execute("DELETE FROM rollup_dirty")
