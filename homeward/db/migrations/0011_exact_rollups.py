"""Rollups equal to the raw readings for any arrival order (TimescaleDB; no-op otherwise).

A continuous aggregate is only as fresh as its last refresh of a bucket: the policies
refresh the last 3 days (hourly) and 30 days (daily) every few minutes, so a reading
that arrives later than that never reached ``readings_hourly``/``readings_daily``, and a
bucket already materialised (the one in progress, say) was stale until the next refresh.

* Every insert, update or delete of a reading marks its hourly and daily bucket
  **dirty** (``rollup_dirty``, one row per view, patient, metric and bucket, its ``seq``
  bumped by each change) — a row trigger, in the writer's own transaction.
* ``readings_hourly`` and ``readings_daily`` are views: the continuous aggregates
  (renamed ``…_ca``, real-time) for clean buckets, and for dirty buckets the aggregate
  of the raw readings — so what they return equals the raw data at every moment.
* ``homeward.db.rollups.refresh_dirty`` (a service timer) refreshes the dirty buckets'
  continuous aggregate and clears each dirty row whose ``seq`` it read; a change made
  meanwhile bumped the ``seq`` (or holds the row's lock until it commits), so its bucket
  stays dirty until the next pass.

Buckets that already hold readings when this runs are marked dirty once, so data that
arrived late before this migration is rolled up correctly too.
"""

from yoyo import step

__depends__ = {"0010_questionable_readings"}

_VIEWS = (("readings_hourly", "hourly", "1 hour"), ("readings_daily", "daily", "1 day"))


def _timescaledb_enabled(cursor) -> bool:  # type: ignore[no-untyped-def]
    cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')")
    return bool(cursor.fetchone()[0])


def apply(conn) -> None:  # type: ignore[no-untyped-def]
    cursor = conn.cursor()
    if not _timescaledb_enabled(cursor):
        return  # plain PostgreSQL: the rollups are views over readings, always exact
    cursor.execute(
        "CREATE TABLE rollup_dirty ("
        " view text NOT NULL CHECK (view IN ('hourly', 'daily')),"
        " patient_id integer NOT NULL, metric text NOT NULL, bucket timestamptz NOT NULL,"
        " seq bigint NOT NULL,"
        " PRIMARY KEY (view, patient_id, metric, bucket))"
    )
    cursor.execute("CREATE SEQUENCE rollup_dirty_seq")
    cursor.execute(
        """
        CREATE FUNCTION mark_rollups_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            r readings;
        BEGIN
            IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
            INSERT INTO rollup_dirty (view, patient_id, metric, bucket, seq)
            VALUES ('hourly', r.patient_id, r.metric, time_bucket(INTERVAL '1 hour', r.time),
                    nextval('rollup_dirty_seq')),
                   ('daily', r.patient_id, r.metric, time_bucket(INTERVAL '1 day', r.time),
                    nextval('rollup_dirty_seq'))
            ON CONFLICT (view, patient_id, metric, bucket) DO UPDATE SET seq = EXCLUDED.seq;
            IF TG_OP = 'UPDATE' AND (OLD.time, OLD.patient_id, OLD.metric)
                    IS DISTINCT FROM (NEW.time, NEW.patient_id, NEW.metric) THEN
                INSERT INTO rollup_dirty (view, patient_id, metric, bucket, seq)
                VALUES ('hourly', OLD.patient_id, OLD.metric,
                        time_bucket(INTERVAL '1 hour', OLD.time), nextval('rollup_dirty_seq')),
                       ('daily', OLD.patient_id, OLD.metric,
                        time_bucket(INTERVAL '1 day', OLD.time), nextval('rollup_dirty_seq'))
                ON CONFLICT (view, patient_id, metric, bucket) DO UPDATE SET seq = EXCLUDED.seq;
            END IF;
            RETURN NULL;
        END $$
        """
    )
    cursor.execute(
        "CREATE TRIGGER readings_rollups_dirty AFTER INSERT OR UPDATE OR DELETE ON readings"
        " FOR EACH ROW EXECUTE FUNCTION mark_rollups_dirty()"
    )
    for name, view, width in _VIEWS:
        cursor.execute(f"ALTER MATERIALIZED VIEW {name} RENAME TO {name}_ca")
        cursor.execute(
            "INSERT INTO rollup_dirty (view, patient_id, metric, bucket, seq)"
            f" SELECT DISTINCT '{view}', patient_id, metric,"
            f" time_bucket(INTERVAL '{width}', time), nextval('rollup_dirty_seq')"
            " FROM readings ON CONFLICT DO NOTHING"
        )
        cursor.execute(
            f"""
            CREATE VIEW {name} AS
            SELECT c.bucket, c.patient_id, c.metric, c.n, c.mean, c.min, c.max
            FROM {name}_ca c
            WHERE NOT EXISTS (
                SELECT 1 FROM rollup_dirty d
                WHERE d.view = '{view}' AND d.patient_id = c.patient_id
                  AND d.metric = c.metric AND d.bucket = c.bucket)
            UNION ALL
            SELECT d.bucket, r.patient_id, r.metric, count(*) AS n, avg(r.value) AS mean,
                   min(r.value) AS min, max(r.value) AS max
            FROM rollup_dirty d
            JOIN readings r
              ON r.patient_id = d.patient_id AND r.metric = d.metric
             AND r.time >= d.bucket AND r.time < d.bucket + INTERVAL '{width}'
            WHERE d.view = '{view}'
            GROUP BY d.bucket, r.patient_id, r.metric
            """
        )


def rollback(conn) -> None:  # type: ignore[no-untyped-def]
    cursor = conn.cursor()
    if not _timescaledb_enabled(cursor):
        return
    for name, _view, _width in _VIEWS:
        cursor.execute(f"DROP VIEW {name}")
        cursor.execute(f"ALTER MATERIALIZED VIEW {name}_ca RENAME TO {name}")
    cursor.execute("DROP TRIGGER readings_rollups_dirty ON readings")
    cursor.execute("DROP FUNCTION mark_rollups_dirty()")
    cursor.execute("DROP TABLE rollup_dirty")
    cursor.execute("DROP SEQUENCE rollup_dirty_seq")


steps = [step(apply, rollback)]
