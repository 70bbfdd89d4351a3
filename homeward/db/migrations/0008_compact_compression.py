"""TimescaleDB storage tuned for home-monitoring volumes (no-op on plain PostgreSQL).

* Chunks of 7 days instead of 1: a home-monitored patient sends a few readings a day, so
  daily chunks left compressed segments of a few hundred rows and a fixed cost per chunk.
  With 7-day chunks a compressed week costs ~6.5 bytes per reading instead of ~13
  (``homeward bench`` measures it). Fleets of 1 Hz wearables may want shorter chunks:
  ``SELECT set_chunk_time_interval('readings', INTERVAL '1 day')`` (docs/operations.md).
* One explicit sparse index, a bloom filter on ``device_id``. Left to itself TimescaleDB
  derives bloom filters from every btree index, including ``msg_id`` and the whole
  idempotency key — unique per message, they cost ~3.6 bytes per reading and narrow
  nothing that the segment (patient, metric) and the time range do not already narrow.
  The device bloom keeps a late redelivery into a compressed chunk cheap: the uniqueness
  check decompresses only batches that may hold that device's readings.
"""

from yoyo import step

__depends__ = {"0007_patient_practice"}


def _timescaledb_enabled(cursor) -> bool:  # type: ignore[no-untyped-def]
    cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')")
    return bool(cursor.fetchone()[0])


def apply(conn) -> None:  # type: ignore[no-untyped-def]
    cursor = conn.cursor()
    if not _timescaledb_enabled(cursor):
        return
    cursor.execute("SELECT set_chunk_time_interval('readings', INTERVAL '7 days')")
    cursor.execute("ALTER TABLE readings SET (timescaledb.sparse_index = 'bloom(device_id)')")


def rollback(conn) -> None:  # type: ignore[no-untyped-def]
    cursor = conn.cursor()
    if not _timescaledb_enabled(cursor):
        return
    cursor.execute("SELECT set_chunk_time_interval('readings', INTERVAL '1 day')")
    cursor.execute("ALTER TABLE readings RESET (timescaledb.sparse_index)")


steps = [step(apply, rollback)]
