"""``POST /api/v1/devices/{device_id}/readings``: a hub or phone app posts a v1 reading
message, as a device would publish it over MQTT (docs/payload.md, "Over HTTP").

The device authenticates with its own credential (HTTP Basic, user = device id, the
password its broker account has) — never a staff or patient token — and posts only for
itself: a credential of one device on another's path is refused (403) and audited, like
any failed sign-in. The message then takes the MQTT path exactly (ingest/http_source.py)
and the answer comes after the COMMIT: stored, duplicate, or quarantined with its reason.
"""

from __future__ import annotations

import base64
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web
from psycopg.types.json import Jsonb

from api import views
from api.problems import problem
from devices.credentials import verify_password
from ingest.http_source import HttpSource, NotAccepting, Posted, outcome

HTTP_INGEST = web.AppKey("http_ingest", HttpSource)
PATH = "/api/v1/devices/{device_id}/readings"


def is_device_path(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 6 and parts[1:4] == ["api", "v1", "devices"] and parts[5] == "readings"


@dataclass(slots=True)
class DevicePostLimit:
    """At most ``per_minute`` posts per device in any 60 s (a sliding window, pure)."""

    per_minute: int
    _recent: dict[str, deque[float]] = field(default_factory=dict)

    def allow(self, device_id: str, now: float) -> bool:
        recent = self._recent.setdefault(device_id, deque())
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return False
        recent.append(now)
        return True


LIMIT = web.AppKey("device_post_limit", DevicePostLimit)


def _credentials(header: str | None) -> tuple[str, str] | None:
    """RFC 7617: ``Basic base64(id:password)``; anything else is no credential."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        login, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (login, password) if sep and login else None


async def audit_device(request: web.Request, actor: str, status: int, reason: str) -> None:
    async with request.app[views.POOL].connection(timeout=5) as conn:
        await conn.execute(
            views.Q["audit"],
            {
                "actor": actor,
                "role": "device",
                "action": "post_readings",
                "patient_id": None,
                "team_id": None,
                "allowed": status < 400,
                "status": status,
                "detail": Jsonb({"path": request.path[:200], "reason": reason}),
            },
        )


class Answer(Exception):
    """A request ends here with ``response`` (a refusal, a limit, the service away)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _unauthorised(text: str) -> Answer:
    response = problem(401, text)
    response.headers["WWW-Authenticate"] = 'Basic realm="homeward devices"'
    return Answer(response)


async def device_of(request: web.Request, claimed: str | None) -> str:
    """The device the request's credential proves, if it may post for ``claimed`` (the
    device of the path or of the body; ``None``: whichever it is). Failures audited."""
    given = _credentials(request.headers.get("Authorization"))
    if given is None:
        raise _unauthorised("a device authenticates with HTTP Basic: its id and password")
    login, password = given
    async with request.app[views.POOL].connection(timeout=5) as conn:
        cur = await conn.execute("SELECT password_hash FROM devices WHERE device_id = %s", (login,))
        row = await cur.fetchone()
    if row is None or row[0] is None or not verify_password(password, row[0]):
        await audit_device(request, f"device:{login[:64]}", 401, "unknown device or wrong password")
        raise _unauthorised("unknown device or wrong password")
    if claimed is not None and login != claimed:
        await audit_device(
            request, f"device:{login}", 403, f"posted for another device {claimed!r}"
        )
        raise Answer(problem(403, "a device posts only its own readings"))
    limit = request.app[LIMIT]
    if not limit.allow(login, time.time()):
        response = problem(429, f"at most {limit.per_minute} posts a minute per device")
        response.headers["Retry-After"] = "60"
        raise Answer(response)
    return login


async def deliver(request: web.Request, device_id: str, body: bytes) -> Posted:
    """Store ``body`` as ``device_id``'s reading message, as MQTT would; after COMMIT."""
    source = request.app.get(HTTP_INGEST)
    if source is None:
        raise Answer(problem(503, "this server does not take readings (no ingest running)"))
    try:
        inbound = await source.post(device_id, body)
    except NotAccepting as exc:
        response = problem(503, f"not stored: {exc}; send it again with the same msg_id")
        response.headers["Retry-After"] = "5"
        raise Answer(response) from exc
    async with request.app[views.POOL].connection(timeout=5) as conn:
        return await outcome(conn, inbound)


def quarantined(posted: Posted) -> web.Response:
    return problem(
        422,
        f"quarantined: {posted.reason}: {posted.detail}",
        verdict=posted.verdict,
        reason=posted.reason,
    )


async def post_readings(request: web.Request) -> web.Response:
    device_id = request.match_info["device_id"]
    try:
        await device_of(request, device_id)
        posted = await deliver(request, device_id, await request.read())
    except Answer as answer:
        return answer.response
    if posted.verdict == "quarantined":
        return quarantined(posted)
    return views.json_response(
        {"device": device_id, "verdict": posted.verdict, "readings": posted.readings}
    )
