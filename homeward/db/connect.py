"""Opening connections, and the one seam that translates driver errors into ours."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg

from homeward.errors import Conflict, DatabaseUnavailable, HomewardError, NotFound


@contextlib.contextmanager
def wrap_exceptions() -> Iterator[None]:
    """Re-raise psycopg errors as Homeward errors with the fields a person needs."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"already exists ({_constraint(exc)})") from exc
    except psycopg.errors.ExclusionViolation as exc:
        raise Conflict(f"overlaps an existing record ({_constraint(exc)})") from exc
    except psycopg.errors.ForeignKeyViolation as exc:
        raise NotFound(f"refers to a record that does not exist ({_constraint(exc)})") from exc
    except psycopg.errors.CheckViolation as exc:
        raise HomewardError(f"refused by the database check {_constraint(exc)}") from exc
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"database unavailable: {exc}") from exc


def _constraint(exc: psycopg.Error) -> str:
    return exc.diag.constraint_name or exc.diag.message_primary or type(exc).__name__


def connect(dsn: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    with wrap_exceptions():
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=10)


@contextlib.asynccontextmanager
async def connect_async(
    dsn: str, *, autocommit: bool = False
) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    with wrap_exceptions():
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=autocommit, connect_timeout=10)
    try:
        yield conn
    finally:
        await conn.close()


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))
