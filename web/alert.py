"""The alert page: the alert's whole story — every event in order (raised, updated,
escalated, acknowledged, snoozed, notes, resolved), every notification with each of its
delivery attempts — what ``homeward alerts history`` prints. Read as the alert's
patient's record (the API's check and audit: ``view_alert``), so a forbidden alert is
the same 404 page as a missing one."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from psycopg.rows import dict_row

from api.views import CONN, PRINCIPAL, Refused, audit, patient_in_care
from web.patient import staff_only
from web.render import render
from web.store import Q


async def alert_page(request: web.Request) -> web.Response:
    staff_only(request)
    alert_id = int(request.match_info["alert_id"])
    conn = request[CONN]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["alert_page"], {"alert_id": alert_id})
        alert = await cur.fetchone()
    if alert is None:
        await audit(
            conn,
            request[PRINCIPAL],
            "view_alert",
            allowed=False,
            status=404,
            detail={"alert_id": alert_id, "reason": "no such alert", "via": "web"},
        )
        raise Refused("no such alert", 404)
    await patient_in_care(
        request, alert["nhs_number"], "view_alert", {"alert_id": alert_id, "via": "web"}
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["alert_events"], {"alert_id": alert_id})
        events: list[dict[str, Any]] = await cur.fetchall()
        await cur.execute(Q["alert_notifications"], {"alert_id": alert_id})
        notifications = await cur.fetchall()
    return await render(
        request,
        "alert.html",
        {
            "title": f"Alert {alert_id}",
            "alert": alert,
            "events": events,
            "notifications": notifications,
        },
    )


def routes(app: web.Application) -> None:
    app.router.add_get("/alerts/{alert_id:\\d{1,18}}", alert_page)
