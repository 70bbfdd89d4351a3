"""Strict readers for what a client sends: pure functions, no I/O.

Each input has one documented form and nothing else is guessed (docs/api.md, "Inputs"):

* a time is RFC 3339 with seconds and an offset (``2026-12-01T08:00:00Z``,
  ``…+01:00``), between :data:`EARLIEST` and :data:`LATEST` — never Unix seconds, never
  a date alone, never a local time;
* a count is decimal digits only (``50``; not ``+50``, ``5e1``, ``50.0`` or ``true``);
* a body is one JSON object whose keys each appear once, with no ``NaN`` or
  ``Infinity``, and whose numbers are JSON numbers (``true`` or ``"1e3"`` is not a
  number);
* no text anywhere — path, query or body — holds a NUL character or a lone surrogate
  (PostgreSQL can store neither, and no legitimate client sends one).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from homeward.errors import ValidationError

# The times a request may name. Readings are never older than the Unix epoch, and the
# upper bound leaves a year of headroom below Python's and PostgreSQL's limits, so
# nothing computed from a time (a default window, the next page) can overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
MAX_BODY_BYTES = 64 * 1024  # the longest note (4,000 characters) with room to spare

_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?P<fraction>\.\d{1,9})?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)
_COUNT = re.compile(r"[0-9]{1,9}")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with an offset, in UTC; anything else raises ValueError."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(
            "expected an RFC 3339 time with seconds and an offset, e.g. 2026-12-01T08:00:00Z"
        )
    fraction = (match["fraction"] or "")[:7]  # microseconds: PostgreSQL's resolution
    offset = "+00:00" if match["offset"] in ("Z", "z") else match["offset"]
    try:
        local = datetime.fromisoformat(f"{match['date']}T{match['time']}{fraction}{offset}")
        utc = local.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a valid time: {exc}") from None
    if not EARLIEST <= utc <= LATEST:
        raise ValueError(f"times are between {EARLIEST.isoformat()} and {LATEST.isoformat()} (UTC)")
    return utc


def parse_count(text: str) -> int:
    """Decimal digits only; anything else raises ValueError."""
    if not _COUNT.fullmatch(text):
        raise ValueError("expected a whole number written in digits, e.g. 50")
    return int(text)


def bad_text(value: Any) -> str | None:
    """What is wrong with the text anywhere in a string, a key or a nested value (a NUL
    character, or a lone surrogate that is not Unicode), or ``None``."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "a character that is not Unicode (a lone surrogate)"
        return None
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := bad_text(k) or bad_text(v))), None)
    if isinstance(value, list):
        return next((p for v in value if (p := bad_text(v))), None)
    return None


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValidationError(f"the body names {key!r} more than once")
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    raise ValidationError(f"{name} is not a JSON number")


def parse_body(raw: bytes) -> dict[str, Any]:
    """A request body as one JSON object (an empty body is ``{}``); raises
    :class:`ValidationError` for anything two JSON parsers could read differently."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the body is not UTF-8") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_repeats, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"the body is not JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise ValidationError("the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ValidationError("the body must be a JSON object")
    if (problem := bad_text(data)) is not None:
        raise ValidationError(f"the body holds {problem}")
    return data
