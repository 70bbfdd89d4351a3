"""Late readings for a person's review: listed and closed (the CLI and the API share
these queries).

A reading that arrives after newer ones and would have breached a rule is stored as
history and never raised as a current alert (docs/rules.md); the rule stage writes it
to ``late_reviews`` instead. Here a person lists them and closes each with a note —
once: a closed review stays closed (a trigger refuses any other change)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from homeward.db.connect import wrap_exceptions
from homeward.db.queries import load_queries
from homeward.errors import Conflict, NotFound

Q = load_queries(Path(__file__).with_name("late_reviews.sql"))
STATES = ("open", "closed")
MAX_NOTE_CHARS = 4000


def _args(
    team: str | None, nhs_number: str | None, state: str | None, limit: int
) -> dict[str, Any]:
    return {"team": team, "nhs_number": nhs_number, "state": state, "limit": limit}


def list_reviews(
    conn: psycopg.Connection[Any],
    *,
    team: str | None = None,
    nhs_number: str | None = None,
    state: str | None = "open",
    limit: int = 200,
) -> list[dict[str, Any]]:
    with wrap_exceptions(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["list_reviews"], _args(team, nhs_number, state, limit)).fetchall()


async def list_reviews_async(
    conn: psycopg.AsyncConnection[Any],
    *,
    team: str | None = None,
    state: str | None = "open",
    limit: int = 200,
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["list_reviews"], _args(team, None, state, limit))
        return await cur.fetchall()


def _closed(row: dict[str, Any] | None, state: dict[str, Any] | None, review_id: int) -> Any:
    if row is not None:
        return row
    if state is None:
        raise NotFound(f"no late review {review_id}")
    raise Conflict(f"late review {review_id} is already closed")


def close_review(
    conn: psycopg.Connection[Any], review_id: int, *, by: str, note: str | None, now: datetime
) -> dict[str, Any]:
    """Close an open review; NotFound for an unknown one, Conflict for a closed one."""
    args = {"review_id": review_id, "by": by, "note": note, "now": now}
    with wrap_exceptions(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(Q["close_review"], args).fetchone()
        state = None if row else cur.execute(Q["review_state"], args).fetchone()
    result: dict[str, Any] = _closed(row, state, review_id)
    return result


async def review_state(conn: psycopg.AsyncConnection[Any], review_id: int) -> dict[str, Any] | None:
    """The review's patient, their team, and whether it is closed (``None``: no such)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["review_state"], {"review_id": review_id})
        return await cur.fetchone()


async def close_review_async(
    conn: psycopg.AsyncConnection[Any],
    review_id: int,
    *,
    by: str,
    note: str | None,
    now: datetime,
) -> dict[str, Any]:
    args = {"review_id": review_id, "by": by, "note": note, "now": now}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["close_review"], args)
        row = await cur.fetchone()
    state = None if row else await review_state(conn, review_id)
    result: dict[str, Any] = _closed(row, state, review_id)
    return result
