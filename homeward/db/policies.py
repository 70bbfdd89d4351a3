"""TimescaleDB storage policies (compression, retention, rollup refresh) from settings.

Applied by ``homeward db upgrade`` after the migrations, idempotently, so changing
``HOMEWARD_COMPRESS_AFTER_DAYS`` or ``HOMEWARD_RETENTION_DAYS`` and re-running the
command is how an operator changes them. On plain PostgreSQL there is nothing to apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from homeward.db.connect import connect


@dataclass(frozen=True, slots=True)
class StoragePolicies:
    timescaledb: bool
    compress_after_days: int | None
    retention_days: int | None


def timescaledb_enabled(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None


def apply_policies(
    dsn: str, *, compress_after_days: int, retention_days: int | None
) -> StoragePolicies:
    with connect(dsn, autocommit=True) as conn:
        if not timescaledb_enabled(conn):
            return StoragePolicies(False, None, None)
        compress = f"{compress_after_days} days"
        conn.execute("SELECT remove_compression_policy('readings', if_exists => true)")
        conn.execute(
            "SELECT add_compression_policy('readings', compress_after => %s::interval)",
            (compress,),
        )
        conn.execute("SELECT remove_retention_policy('readings', if_exists => true)")
        if retention_days is not None:
            conn.execute(
                "SELECT add_retention_policy('readings', drop_after => %s::interval)",
                (f"{retention_days} days",),
            )
        # The continuous aggregates behind the readings_hourly/readings_daily views
        # (migration 0011): these policies keep the recent buckets materialised; late
        # and backfilled buckets are refreshed by homeward.db.rollups.refresh_dirty.
        for view, start, every in (
            ("readings_hourly_ca", "3 days", "5 minutes"),
            ("readings_daily_ca", "30 days", "1 hour"),
        ):
            conn.execute(
                "SELECT add_continuous_aggregate_policy(%s::regclass,"
                " start_offset => %s::interval, end_offset => NULL,"
                " schedule_interval => %s::interval, if_not_exists => true)",
                (view, start, every),
            )
        return StoragePolicies(True, compress_after_days, retention_days)
