"""Versioned schema migrations with yoyo-migrations (plain SQL files, one Python step)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
