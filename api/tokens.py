"""Issuing, listing and revoking API tokens (the command line's side of api/access.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from api.access import new_token, token_digest
from homeward.db.connect import wrap_exceptions
from homeward.db.queries import load_queries
from homeward.errors import NotFound, ValidationError
from homeward.nhs import normalise_nhs_number

Q = load_queries(Path(__file__).with_name("queries.sql"))
MAX_DAYS = 366


def issue_token(
    conn: psycopg.Connection[Any],
    *,
    now: datetime,
    staff_id: str | None = None,
    nhs_number: str | None = None,
    days: float = 30,
    label: str = "",
) -> tuple[int, str]:
    """A new token for one staff member or one patient; returns its id and the token,
    which is shown this once (only its hash is stored)."""
    if (staff_id is None) == (nhs_number is None):
        raise ValidationError("a token is for one staff member or one patient: give one")
    if not 0 < days <= MAX_DAYS:
        raise ValidationError(f"a token lasts more than 0 and at most {MAX_DAYS} days")
    patient_id = None
    with wrap_exceptions(), conn.cursor() as cur:
        if staff_id is not None:
            if (
                cur.execute("SELECT 1 FROM staff WHERE staff_id = %s", (staff_id,)).fetchone()
                is None
            ):
                raise NotFound(f"no staff member {staff_id!r} (load the teams file first)")
        else:
            number = normalise_nhs_number(nhs_number or "")
            row = cur.execute(
                "SELECT patient_id FROM patients WHERE nhs_number = %s", (number,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no patient with NHS number {number}")
            patient_id = row[0]
        token = new_token()
        row = cur.execute(
            Q["issue_token"],
            {
                "digest": token_digest(token),
                "staff_id": staff_id,
                "patient_id": patient_id,
                "label": label,
                "now": now,
                "expires_at": now + timedelta(days=days),
            },
        ).fetchone()
        conn.commit()
    assert row is not None
    return int(row[0]), token


def revoke_token(conn: psycopg.Connection[Any], token_id: int, *, now: datetime) -> None:
    with wrap_exceptions(), conn.cursor() as cur:
        if cur.execute(Q["revoke_token"], {"token_id": token_id, "now": now}).fetchone() is None:
            raise NotFound(f"no unrevoked token {token_id}")
        conn.commit()


def list_tokens(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with wrap_exceptions(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["list_tokens"]).fetchall()


def list_audit(
    conn: psycopg.Connection[Any],
    *,
    nhs_number: str | None = None,
    actor: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    number = normalise_nhs_number(nhs_number) if nhs_number else None
    with wrap_exceptions(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            Q["list_audit"], {"nhs_number": number, "actor": actor, "limit": limit}
        ).fetchall()


def list_dropped(conn: psycopg.Connection[Any], *, limit: int = 200) -> list[dict[str, Any]]:
    """Unauthenticated refusals counted, not kept: per client address and window."""
    with wrap_exceptions(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["list_dropped"], {"limit": limit}).fetchall()
