"""Passwords and sessions in PostgreSQL: the command line's side (set a password,
synchronous) and the web app's (sign in, look a session up, sign out; asynchronous)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from api.access import Kind, Principal
from homeward.db.connect import wrap_exceptions
from homeward.db.queries import load_queries
from homeward.errors import NotFound
from homeward.nhs import normalise_nhs_number
from web import passwords
from web.sessions import Ended, Lifetimes, RateLimit, SessionTimes, digest, expiry, new_secret

Q = load_queries(Path(__file__).with_name("queries.sql"))


def set_password(
    conn: psycopg.Connection[Any],
    *,
    now: datetime,
    password: str,
    staff_id: str | None = None,
    nhs_number: str | None = None,
) -> None:
    """Set (or replace) a staff member's or a patient's password; their open sessions
    end. The password must meet web/passwords.py's length rule."""
    hashed = passwords.hash_password(password)
    with wrap_exceptions(), conn.cursor() as cur:
        patient_id = None
        if staff_id is not None:
            if cur.execute(Q["staff_exists"], {"staff_id": staff_id}).fetchone() is None:
                raise NotFound(f"no staff member {staff_id!r} (load the teams file first)")
            cur.execute(Q["set_staff_password"], {"staff_id": staff_id, "hash": hashed, "now": now})
        else:
            number = normalise_nhs_number(nhs_number or "")
            row = cur.execute(
                "SELECT patient_id FROM patients WHERE nhs_number = %s", (number,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no patient with NHS number {number}")
            patient_id = row[0]
            cur.execute(
                Q["set_patient_password"], {"patient_id": patient_id, "hash": hashed, "now": now}
            )
        cur.execute(
            Q["end_sessions_of"], {"now": now, "staff_id": staff_id, "patient_id": patient_id}
        )
    conn.commit()


def username_key(username: str) -> str:
    """Staff sign in with their staff id, patients with their NHS number (spaces allowed)."""
    username = username.strip()
    digits = username.replace(" ", "").replace("-", "")
    return digits if digits.isdigit() else username


@dataclass(frozen=True, slots=True)
class SignIn:
    ok: bool
    limited: bool = False
    staff_id: str | None = None
    patient_id: int | None = None


async def check_sign_in(
    conn: psycopg.AsyncConnection[Any],
    *,
    username: str,
    password: str,
    remote: str | None,
    now: datetime,
    limit: RateLimit,
) -> SignIn:
    """Verify a user name and password, unless recent failures refuse the attempt
    outright. Every attempt is recorded for the rate limit."""
    key = username_key(username)[:200]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            Q["recent_failures"],
            {"username": key, "remote": remote, "since": now - limit.window},
        )
        counts = await cur.fetchone()
        assert counts is not None
        if limit.refuses(counts["user_failures"], counts["remote_failures"]):
            await cur.execute(
                Q["record_attempt"], {"now": now, "username": key, "remote": remote, "ok": False}
            )
            return SignIn(ok=False, limited=True)
        await cur.execute(Q["credential"], {"username": key})
        row = await cur.fetchone()
        ok = passwords.verify(row["password_hash"] if row else None, password)
        await cur.execute(
            Q["record_attempt"], {"now": now, "username": key, "remote": remote, "ok": ok}
        )
        if not ok or row is None:
            return SignIn(ok=False)
        if passwords.needs_rehash(row["password_hash"]):
            await cur.execute(
                Q["rehash"],
                {
                    "hash": passwords.hash_password(password),
                    "staff_id": row["staff_id"],
                    "patient_id": row["patient_id"],
                },
            )
    return SignIn(ok=True, staff_id=row["staff_id"], patient_id=row["patient_id"])


async def start_session(
    conn: psycopg.AsyncConnection[Any], signed_in: SignIn, *, now: datetime, lifetimes: Lifetimes
) -> str:
    """A new session for the person just signed in; returns the cookie's value."""
    secret = new_secret()
    await conn.execute(
        Q["create_session"],
        {
            "digest": digest(secret),
            "staff_id": signed_in.staff_id,
            "patient_id": signed_in.patient_id,
            "csrf": new_secret(),
            "now": now,
            "expires_at": now + lifetimes.absolute,
        },
    )
    return secret


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    csrf_token: str
    expires_at: datetime


async def load_session(
    conn: psycopg.AsyncConnection[Any],
    secret: str,
    *,
    now: datetime,
    lifetimes: Lifetimes,
    touch: bool = True,
) -> Session | Ended | None:
    """The valid session behind a cookie (its idle clock restarted unless ``touch`` is
    false), why it ended, or ``None`` for a value that was never a session."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["session"], {"digest": digest(secret)})
        row = await cur.fetchone()
    if row is None:
        return None
    times = SessionTimes(row["created_at"], row["last_seen_at"], row["expires_at"], row["ended_at"])
    ended = expiry(times, lifetimes, now)
    if ended is not None:
        if row["ended_at"] is None:
            await end_session(conn, secret, now=now, why=ended)
        return ended
    if touch:
        await conn.execute(Q["touch_session"], {"digest": digest(secret), "now": now})
    who = Principal(
        kind=Kind(row["kind"]),
        subject=row["subject"],
        name=row["name"],
        team_id=row["team_id"],
        roles=frozenset(row["roles"]),
        patient_id=row["patient_id"],
    )
    return Session(who, row["csrf_token"], row["expires_at"])


async def end_session(
    conn: psycopg.AsyncConnection[Any], secret: str, *, now: datetime, why: Ended
) -> None:
    await conn.execute(Q["end_session"], {"digest": digest(secret), "now": now, "why": why.value})
