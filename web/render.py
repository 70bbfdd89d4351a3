"""HTML from Jinja2 templates (autoescaped), with what every page needs: the person
signed in, the CSRF token for forms, the design system's paths."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api.views import PRINCIPAL
from web.keys import SESSION
from web.sessions import CSRF_FIELD

TEMPLATES = Path(__file__).with_name("templates")


def _age(seconds: float | None) -> str:
    """'3 min', '2 h 5 min', '4 days': how old a reading is, for a person."""
    if seconds is None:
        return "–"
    s = max(0, int(seconds))
    if s < 90:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 48 * 3600:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    return f"{s // 86400} days"


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%d %b %Y %H:%M UTC")


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value)}"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["age"] = _age
    env.filters["when"] = _when
    env.filters["number"] = _number
    return env


def html(template: str, context: dict[str, Any]) -> str:
    return environment().get_template(template).render(**context)


async def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    session = request.get(SESSION)
    full = {
        "who": request.get(PRINCIPAL),
        "csrf_field": CSRF_FIELD,
        "csrf_token": session.csrf_token if session else "",
        "path": request.path,
        **context,
    }
    return web.Response(text=html(template, full), status=status, content_type="text/html")


def see_other(location: str) -> web.Response:
    """A 303 returned (not raised), so the request's transaction still commits."""
    return web.Response(status=303, headers={"Location": location})
