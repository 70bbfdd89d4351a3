"""What every answer carries: JSON problems for errors and the security headers.

An error is ``application/problem+json`` (RFC 9457) with ``status``, ``title``,
``detail`` and, for the clients written against the first version, ``error`` (the same
text as ``detail``); a bad parameter adds ``problems``. A problem never echoes a request
header or the request line: aiohttp's own messages for a malformed request quote the
offending bytes (a bearer token among them), so those are replaced by a fixed text.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

PROBLEM_TYPE = "application/problem+json"
SERVER = "homeward"  # never a version: it only helps an attacker pick an exploit

# On every answer, JSON or not (a page may set its own policy, so these are defaults).
SECURITY_HEADERS = {
    "Cache-Control": "no-store",  # patient data must not stay in a browser's or proxy's cache
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000",  # honoured once behind TLS
}

# What aiohttp's own errors (the HTTP parser's, the router's) say instead of its text.
_FIXED_DETAIL = {
    400: "the request is malformed (request line, a header or the body framing)",
    404: "no such resource",
    405: "this method is not allowed here",
    413: "the request body is too large",
    414: "the request line is too long",
    431: "the request headers are too large",
}


# A page (HTML) loads its own scripts and styles: same origin only, never framed.
PAGE_POLICY = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"


def secure(headers: MutableMapping[str, str], *, page: bool = False) -> None:
    """Set the security headers a handler did not set itself, and hide the version.
    A page gets :data:`PAGE_POLICY` unless it set a policy of its own."""
    if page:
        headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    headers["Server"] = SERVER


def problem(status: int, detail: str | None = None, **extra: Any) -> web.Response:
    """A JSON problem; ``detail`` defaults to a fixed text for the status."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    text = detail or _FIXED_DETAIL.get(status) or title.lower()
    body = {"type": "about:blank", "title": title, "status": status, "detail": text}
    response = web.Response(
        body=orjson.dumps({**body, "error": text, **extra}),
        status=status,
        content_type=PROBLEM_TYPE,
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="homeward"'
    secure(response.headers)
    return response


def from_http_exception(exc: web.HTTPException) -> web.Response:
    """aiohttp's ``HTTPException`` (router 404/405, body 413, …) as a fixed-text problem.
    Only ``Allow`` is kept of its headers (a 405 must say what is allowed)."""
    response = problem(exc.status)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response
