"""Cookie sessions: pure decisions, no I/O (web/store.py keeps them in PostgreSQL).

A session is a random 256-bit value in a cookie (HttpOnly, SameSite=Strict, Secure over
TLS); only its SHA-256 is stored. It ends at sign-out, after ``idle`` without a request,
or ``absolute`` after sign-in, whichever comes first. Signing in always starts a new
session (the old one, if the browser had one, is ended): a session value known before
sign-in is worth nothing after it. Every form carries the session's CSRF token, which
is compared in constant time."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from hashlib import sha256

COOKIE = "homeward_session"
SIGN_IN_COOKIE = "homeward_sign_in"  # the sign-in form's own CSRF token (no session yet)
CSRF_FIELD = "csrf_token"


class Ended(StrEnum):
    SIGNED_OUT = "signed out"
    IDLE = "idle too long"
    ABSOLUTE = "session too old"
    REPLACED = "replaced by a new sign-in"


@dataclass(frozen=True, slots=True)
class Lifetimes:
    idle: timedelta
    absolute: timedelta


@dataclass(frozen=True, slots=True)
class SessionTimes:
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(value: str) -> bytes:
    return sha256(value.encode("utf-8")).digest()


def expiry(times: SessionTimes, lifetimes: Lifetimes, now: datetime) -> Ended | None:
    """Why the session is over at ``now``, or ``None`` while it is valid."""
    if times.ended_at is not None:
        return Ended.SIGNED_OUT
    if now >= times.expires_at:
        return Ended.ABSOLUTE
    if now - times.last_seen_at >= lifetimes.idle:
        return Ended.IDLE
    return None


def same_token(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Failed sign-ins allowed in ``window`` for one user name, and (four times as many)
    from one address, before sign-in is refused without looking at the password."""

    failures: int
    window: timedelta

    def refuses(self, user_failures: int, remote_failures: int) -> bool:
        return user_failures >= self.failures or remote_failures >= 4 * self.failures
