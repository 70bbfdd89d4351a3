"""The alert listing and an alert's history for the command line (``homeward alerts
list|history``), in the order of the API's team queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from homeward.db.connect import wrap_exceptions
from homeward.db.queries import load_queries

Q = load_queries(Path(__file__).with_name("queue.sql"))


def list_alerts(
    conn: psycopg.Connection[Any],
    *,
    team: str | None = None,
    state: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    with wrap_exceptions(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            Q["list_alerts"], {"team": team, "state": state, "limit": limit}
        ).fetchall()


def alert_history(conn: psycopg.Connection[Any], alert_id: int) -> list[dict[str, Any]]:
    with wrap_exceptions(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["alert_history"], {"alert_id": alert_id}).fetchall()
