"""``GET /queue/events``: the team's live stream for the queue page (web/live.py).

The session is checked when the stream opens and again at every keep-alive (15 s): a
session that ended (idle, absolute limit, sign-out) gets a ``signed-out`` event and the
stream closes, so a queue left open never looks live when it is not. The stream itself
does not count as activity: only a person's requests keep a session alive.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from aiohttp import web

from api.access import may_read_queue
from api.views import POOL, PRINCIPAL, Q, audit
from web.keys import HUB, SETTINGS, lifetimes
from web.live import Event, format_event
from web.sessions import COOKIE
from web.store import Session, load_session

KEEPALIVE_S = 15.0
LISTEN_WAIT_S = 5.0


async def _still_signed_in(request: web.Request) -> bool:
    now = datetime.now(UTC)
    async with request.app[POOL].connection(timeout=5) as conn, conn.transaction():
        found = await load_session(
            conn,
            request.cookies.get(COOKIE, ""),
            now=now,
            lifetimes=lifetimes(request.app[SETTINGS]),
            touch=False,
        )
    return isinstance(found, Session)


async def queue_events(request: web.Request) -> web.StreamResponse:
    who = request[PRINCIPAL]
    hub = request.app[HUB]
    team = who.team_id
    decision = may_read_queue(who, team) if team else None
    async with request.app[POOL].connection(timeout=5) as conn, conn.transaction():
        allowed = decision is not None and decision.allowed
        await audit(
            conn,
            who,
            "stream_queue",
            allowed=allowed,
            status=200 if allowed else 404,
            team_id=team,
            detail={"reason": decision.reason if decision else "no team"},
        )
        if not allowed or team is None:
            return web.Response(status=404, text="Page not found")
        cur = await conn.execute(Q["covered_teams"], {"team_id": team})
        teams = frozenset([team, *(t for (t,) in await cur.fetchall())])
    async with hub.subscribe(teams) as queue:
        deadline = time.monotonic() + LISTEN_WAIT_S
        while not all(hub.listening_to(t) for t in teams) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # listening before "open": the page re-reads on open
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 3000\n\n")
            missed = hub.missed(teams, request.headers.get("Last-Event-ID"))
            for old in missed if missed is not None else [Event("", "resync", None, "{}")]:
                await response.write(format_event(old))
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if not await _still_signed_in(request):
                        await response.write(format_event(Event("", "signed-out", None, "{}")))
                        break
                    await response.write(b": keep-alive\n\n")
                    continue
                if event is None:  # the service is stopping
                    break
                await response.write(format_event(event))
            await response.write_eof()
        except (ConnectionError, OSError):  # the browser went away (aiohttp's are these too)
            pass
    return response


def routes(app: web.Application) -> None:
    app.router.add_get("/queue/events", queue_events)
