"""The web app's typed keys on the application and the request."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from homeward.config import Settings
from web.live import LiveHub
from web.sessions import Lifetimes, RateLimit
from web.store import Session

SETTINGS = web.AppKey("web_settings", Settings)
SESSION: web.RequestKey[Session] = web.RequestKey("web_session", Session)
HUB = web.AppKey("web_live_hub", LiveHub)


def lifetimes(settings: Settings) -> Lifetimes:
    return Lifetimes(
        idle=timedelta(seconds=settings.web_session_idle_s),
        absolute=timedelta(seconds=settings.web_session_max_s),
    )


def rate_limit(settings: Settings) -> RateLimit:
    return RateLimit(
        settings.web_sign_in_failures, timedelta(seconds=settings.web_sign_in_window_s)
    )


def secure_cookies(request: web.Request) -> bool:
    return request.secure or request.app[SETTINGS].web_secure_cookies
