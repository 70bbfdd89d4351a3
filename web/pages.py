"""The staff pages: the team's queue and the actions on an alert (forms that post to
the same code as the API's actions, api/actions.py)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from alerts.alert import MAX_SNOOZE, Outcome
from api.access import Kind
from api.actions import ACTIONS, perform
from api.views import CONN, PRINCIPAL, Refused, read_queue
from web.render import render, see_other

QUEUE_LIMIT = 200
STALE_AFTER_S = 24 * 3600  # a reading older than this is shown as stale
OUTCOMES = [(o.value, o.value.replace("_", " ").capitalize()) for o in Outcome]
SNOOZE_CHOICES = (15, 30, 60, 120, 240, 24 * 60)


def _staff_only(request: web.Request) -> None:
    if request[PRINCIPAL].kind is not Kind.STAFF:
        raise Refused("staff only", 404)  # a patient's "forbidden" is "not found"


async def queue_rows(request: web.Request) -> tuple[str, list[dict[str, Any]]]:
    _staff_only(request)
    who = request[PRINCIPAL]
    team, alerts_json = await read_queue(
        request[CONN], who, team=None, state=None, limit=QUEUE_LIMIT
    )
    alerts: list[dict[str, Any]] = orjson.loads(alerts_json)
    for a in alerts:
        a["stale"] = a["age_s"] is not None and a["age_s"] > STALE_AFTER_S
        limit = MAX_SNOOZE.get(a["priority"])
        a["snooze_choices"] = [
            m for m in SNOOZE_CHOICES if limit is None or m * 60 <= limit.total_seconds()
        ]
    return team, alerts


def _context(team: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    red = sum(1 for a in alerts if a["priority"] == "red")
    return {
        "title": f"Queue for {team}",
        "team": team,
        "alerts": alerts,
        "red": red,
        "outcomes": OUTCOMES,
        "notice": None,
    }


async def queue_page(request: web.Request) -> web.Response:
    team, alerts = await queue_rows(request)
    context = _context(team, alerts)
    context["notice"] = request.query.get("done")
    return await render(request, "queue.html", context)


async def queue_fragment(request: web.Request) -> web.Response:
    """The queue's table alone, which the page's script swaps in on a live event."""
    team, alerts = await queue_rows(request)
    response = await render(request, "queue_table.html", _context(team, alerts))
    response.headers["X-Homeward-Red"] = str(sum(1 for a in alerts if a["priority"] == "red"))
    return response


def _form_data(name: str, form: Any) -> dict[str, Any]:
    def text(key: str) -> str | None:
        value = form.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None

    if name == "acknowledge":
        return {}
    if name == "resolve":
        return {k: v for k, v in {"outcome": text("outcome"), "note": text("note")}.items() if v}
    if name == "snooze":
        return {"minutes": text("minutes") or "", "reason": text("reason") or ""}
    return {"text": text("text") or ""}


def _action(name: str) -> Any:
    async def act(request: web.Request) -> web.Response:
        _staff_only(request)
        alert_id = int(request.match_info["alert_id"])
        form = await request.post()
        data = _form_data(name, form)

        async def read_form(model: type[Any]) -> tuple[Any, list[str]]:
            return model.model_validate(data), sorted(data)  # form values are text

        try:
            result = await perform(request[PRINCIPAL], request[CONN], name, alert_id, read_form)
        except Refused as exc:
            if exc.status == 404:
                raise
            return await render(
                request,
                "error.html",
                {"title": "That could not be done", "message": str(exc)},
                status=exc.status,
            )
        back = form.get("back")
        target = (
            back
            if isinstance(back, str) and back.startswith("/") and not back.startswith("//")
            else "/queue"
        )
        return see_other(f"{target}?done={result['event']}#alert-{alert_id}")

    act.__name__ = f"web_{name}"
    return act


def routes(app: web.Application) -> None:
    app.router.add_get("/queue", queue_page)
    app.router.add_get("/queue/table", queue_fragment)
    for name in ACTIONS:
        app.router.add_post(f"/alerts/{{alert_id:\\d{{1,18}}}}/{name}", _action(name))
