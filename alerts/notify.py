"""Delivering notifications: signed webhooks, e-mail over SMTP, in-app (already stored).

At least once: a due notification is leased, sent, and then marked delivered or given a
retry time (exponential backoff, capped). Every attempt is recorded. A webhook carries
``Idempotency-Key`` (the same for every retry) and ``X-Homeward-Signature:
sha256=<HMAC of the body>`` with the team's secret from the environment; the receiver
verifies it and ignores keys it has seen.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import smtplib
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import psycopg

from homeward.db.queries import load_queries

log = logging.getLogger(__name__)
Q = load_queries(Path(__file__).with_name("escalation.sql"))


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay_s(attempts: int, cap_s: float = 300.0) -> float:
    return min(cap_s, 2.0**attempts)


class Senders:
    def __init__(
        self,
        smtp_url: str | None,
        mail_from: str,
        secrets: dict[str, str] | None = None,
        publish_feedback: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.smtp_url = smtp_url
        self.mail_from = mail_from
        self.secrets = secrets if secrets is not None else dict(os.environ)
        self.publish_feedback = publish_feedback

    async def feedback(self, device_id: str, payload: dict[str, Any]) -> str:
        if self.publish_feedback is None:
            raise RuntimeError("not connected to the broker")
        self.publish_feedback(device_id, orjson.dumps(payload))
        return f"published to {device_id}"

    async def webhook(
        self, url: str, payload: dict[str, Any], key: str, secret_env: str | None
    ) -> str:
        body = orjson.dumps(payload)
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if secret_env:
            secret = self.secrets.get(secret_env)
            if not secret:
                raise RuntimeError(f"webhook secret {secret_env} is not set")
            headers["X-Homeward-Signature"] = sign(secret, body)
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(url, data=body, headers=headers) as response,
        ):
            if response.status >= 300:
                raise RuntimeError(f"webhook answered {response.status}")
            return f"HTTP {response.status}"

    async def email(self, to: str, payload: dict[str, Any]) -> str:
        if not self.smtp_url:
            raise RuntimeError("no SMTP server configured (HOMEWARD_SMTP_URL)")
        parts = urlsplit(self.smtp_url)
        message = EmailMessage()
        message["From"] = self.mail_from
        message["To"] = to
        message["Subject"] = (
            f"[Homeward {payload['priority']}] alert {payload['alert_id']} — team {payload['team']}"
        )
        message.set_content(
            f"{payload['message']}\n\nEscalation level {payload['level']}. Open the queue to "
            "acknowledge. No patient-identifiable data is sent by e-mail."
        )

        def send() -> None:
            with smtplib.SMTP(parts.hostname or "localhost", parts.port or 25, timeout=10) as s:
                if parts.username:
                    s.starttls()
                    s.login(parts.username, parts.password or "")
                s.send_message(message)

        await asyncio.to_thread(send)
        return f"sent to {to}"


CLAIM_LIMIT = 50  # notifications leased per pass (claim_notifications)
MAX_PASSES = 10  # per tick: a backlog is worked off over several ticks, not in one stall
_LOCAL = ("in_app", "feedback")  # no outside service to wait for


async def deliver_due(
    conn: psycopg.AsyncConnection[Any], senders: Senders, now: datetime
) -> tuple[int, int]:
    """Send what is due at ``now``, in passes of up to CLAIM_LIMIT, at most MAX_PASSES of
    them: an alert storm is delivered ten times faster than one pass a tick would, while
    a large backlog (after an outage) cannot hold up ingest, which shares the event loop,
    for long. Returns (delivered, failed)."""
    outcomes: list[dict[str, Any]] = []
    for _ in range(MAX_PASSES):
        async with conn.transaction():
            cur = await conn.execute(Q["claim_notifications"], {"now": now})
            claimed = await cur.fetchall()
            secrets = {}
            if any(row[2] == "webhook" for row in claimed):
                cur = await conn.execute("SELECT webhook_url, webhook_secret_env FROM teams")
                secrets = {url: env for url, env in await cur.fetchall() if url}
        # In-app and device feedback need no outside service: recorded together.
        local = [
            _outcome(row, *await _send(senders, row, secrets), now)
            for row in claimed
            if row[2] in _LOCAL
        ]
        await _record(conn, local)
        outcomes += local
        for row in claimed:
            if row[2] not in _LOCAL:  # recorded once sent: a crash never forgets one
                outcome = _outcome(row, *await _send(senders, row, secrets), now)
                await _record(conn, [outcome])
                outcomes.append(outcome)
        if len(claimed) < CLAIM_LIMIT:
            break
    delivered = sum(o["ok"] for o in outcomes)
    return delivered, len(outcomes) - delivered


async def _send(
    senders: Senders, row: tuple[Any, ...], secrets: dict[str, str]
) -> tuple[bool, str]:
    """One notification over its channel: (sent, what happened)."""
    _id, _alert_id, channel, target, payload, key, _attempts = row
    try:
        if channel == "in_app":
            return True, "stored for the in-app queue"
        if channel == "feedback":
            return True, await senders.feedback(target, payload)
        if channel == "webhook":
            return True, await senders.webhook(target, payload, key, secrets.get(target))
        if channel == "email":
            return True, await senders.email(target, payload)
        raise ValueError(f"unknown channel {channel!r}")
    except Exception as exc:  # any failure is recorded and retried, never dropped
        return False, f"{type(exc).__name__}: {exc}"


def _outcome(row: tuple[Any, ...], ok: bool, detail: str, now: datetime) -> dict[str, Any]:
    """The parameters that record one attempt (and, on failure, its retry time)."""
    notification_id, _alert_id, channel, target, _payload, _key, attempts = row
    detail = detail[:500]
    if not ok:
        log.warning(
            "notification %s (%s to %s) failed: %s", notification_id, channel, target, detail
        )
    return {
        "id": notification_id,
        "ok": ok,
        "detail": detail,
        "error": detail,
        "now": now,
        "retry_at": now + timedelta(seconds=retry_delay_s(attempts)),
    }


async def _record(conn: psycopg.AsyncConnection[Any], outcomes: list[dict[str, Any]]) -> None:
    """Every attempt, then delivered or a retry time, in one transaction."""
    if not outcomes:
        return
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(Q["attempt"], outcomes)
        if delivered := [o for o in outcomes if o["ok"]]:
            await cur.executemany(Q["delivered"], delivered)
        if failed := [o for o in outcomes if not o["ok"]]:
            await cur.executemany(Q["failed"], failed)
