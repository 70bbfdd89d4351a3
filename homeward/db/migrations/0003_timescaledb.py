"""TimescaleDB when the extension is available; plain-PostgreSQL rollup views otherwise.

Both paths give the same relations to query: ``readings`` and the rollups
``readings_hourly`` and ``readings_daily`` (bucket, patient_id, metric, n, mean, min, max).
Compression, retention and refresh policies are applied separately from settings by
``homeward db upgrade`` (see homeward/db/policies.py).
"""

from yoyo import step

__depends__ = {"0002_readings"}

_ROLLUP_COLUMNS = """
    patient_id, metric, count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max
"""


def _timescaledb_available(cursor) -> bool:  # type: ignore[no-untyped-def]
    """Installed on the server and preloaded (CREATE EXTENSION fails otherwise)."""
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
        " AND current_setting('shared_preload_libraries') LIKE '%%timescaledb%%'"
    )
    return bool(cursor.fetchone()[0])


def apply(conn) -> None:  # type: ignore[no-untyped-def]
    cursor = conn.cursor()
    if not _timescaledb_available(cursor):
        for name, trunc in (("readings_hourly", "hour"), ("readings_daily", "day")):
            cursor.execute(
                f"CREATE VIEW {name} AS SELECT date_trunc('{trunc}', time) AS bucket,"
                f" {_ROLLUP_COLUMNS} FROM readings GROUP BY 1, 2, 3"
            )
        return
    cursor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    cursor.execute(
        "SELECT create_hypertable('readings', by_range('time', INTERVAL '1 day'),"
        " migrate_data => true)"
    )
    cursor.execute(
        "ALTER TABLE readings SET (timescaledb.compress,"
        " timescaledb.compress_segmentby = 'patient_id, metric',"
        " timescaledb.compress_orderby = 'time')"
    )
    for name, width in (("readings_hourly", "1 hour"), ("readings_daily", "1 day")):
        cursor.execute(
            f"CREATE MATERIALIZED VIEW {name} WITH (timescaledb.continuous) AS"
            f" SELECT time_bucket(INTERVAL '{width}', time) AS bucket, {_ROLLUP_COLUMNS}"
            " FROM readings GROUP BY 1, 2, 3 WITH NO DATA"
        )
        # Real-time aggregation: recent, not yet materialised buckets are still included.
        cursor.execute(
            f"ALTER MATERIALIZED VIEW {name} SET (timescaledb.materialized_only = false)"
        )


def rollback(conn) -> None:  # type: ignore[no-untyped-def]
    cursor = conn.cursor()
    kind = "MATERIALIZED VIEW" if _timescaledb_available(cursor) else "VIEW"
    for name in ("readings_daily", "readings_hourly"):
        cursor.execute(f"DROP {kind} IF EXISTS {name}")


steps = [step(apply, rollback)]
