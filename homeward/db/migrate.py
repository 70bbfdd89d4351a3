"""Versioned schema migrations with yoyo-migrations (plain SQL files, one Python step)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from yoyo import get_backend, read_migrations

from homeward.db.connect import wrap_exceptions

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


@dataclass(frozen=True, slots=True)
class MigrationReport:
    applied: tuple[str, ...]
    already: int


def _yoyo_url(dsn: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+psycopg://" + dsn[len(prefix) :]
    return dsn


def upgrade(dsn: str) -> MigrationReport:
    """Apply every pending migration, under yoyo's lock (safe with several workers)."""
    with wrap_exceptions():
        backend = get_backend(_yoyo_url(dsn))
        migrations = read_migrations(str(MIGRATIONS_DIR))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        applied = tuple(m.id for m in pending)
        total = len(migrations)
        backend.connection.close()
    return MigrationReport(applied=applied, already=total - len(applied))


def pending(dsn: str) -> tuple[str, ...]:
    with wrap_exceptions():
        backend = get_backend(_yoyo_url(dsn))
        try:
            return tuple(m.id for m in backend.to_apply(read_migrations(str(MIGRATIONS_DIR))))
        finally:
            backend.connection.close()


@functools.cache
def release_migrations() -> tuple[str, ...]:
    """The ids of the migrations this release ships, in order."""
    return tuple(m.id for m in read_migrations(str(MIGRATIONS_DIR)))


async def not_applied(conn: psycopg.AsyncConnection[Any]) -> tuple[str, ...]:
    """This release's migrations that the database has not applied (read only: unlike
    :func:`pending`, nothing is created when the database was never migrated)."""
    cur = await conn.execute("SELECT to_regclass('_yoyo_migration') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return release_migrations()
    cur = await conn.execute("SELECT migration_id FROM _yoyo_migration")
    applied = {str(r[0]) for r in await cur.fetchall()}
    return tuple(m for m in release_migrations() if m not in applied)
