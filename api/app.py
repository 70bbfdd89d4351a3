"""The aiohttp application. Long-lived resources arrive through typed ``web.AppKey``s."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

POOL = web.AppKey("pool", AsyncConnectionPool)
StatusProvider = Callable[[], dict[str, Any]]
STATUS: web.AppKey[StatusProvider] = web.AppKey("status")


async def health(request: web.Request) -> web.Response:
    """200 when the database answers and the broker is connected; 503 otherwise."""
    status = request.app[STATUS]()
    database = False
    db_error = None
    failing: int | None = None
    try:
        async with request.app[POOL].connection(timeout=2) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM notifications WHERE delivered_at IS NULL AND attempts > 0"
            )
            row = await cur.fetchone()
            failing = int(row[0]) if row else 0
        database = True
    except Exception as exc:  # any failure means "not healthy"; the reason is reported
        db_error = str(exc)
    mqtt = bool(status.get("mqtt", {}).get("connected"))
    healthy = database and mqtt
    body = {
        "status": "ok" if healthy else "degraded",
        "database": {"connected": database, "error": db_error},
        "notifications_failing": failing,  # a failing channel is visible, never silent
        **status,
        "time": time.time(),
    }
    return web.json_response(body, status=200 if healthy else 503)


def create_app(pool: AsyncConnectionPool, status: StatusProvider) -> web.Application:
    app = web.Application()
    app[POOL] = pool
    app[STATUS] = status
    app.router.add_get("/health", health)
    return app
