"""The API's strict readers (api/strict.py) and the anonymous audit limit
(api/ratelimit.py): pure functions, every edge."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.ratelimit import OVERFLOW, AnonymousAuditLimit
from api.strict import EARLIEST, LATEST, bad_text, parse_body, parse_count, parse_time
from homeward.errors import ValidationError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T08:00:00Z", datetime(2026, 12, 1, 8, tzinfo=UTC)),
        ("2026-12-01t09:00:00+01:00", datetime(2026, 12, 1, 8, tzinfo=UTC)),
        ("2026-12-01T08:00:00.123456789Z", datetime(2026, 12, 1, 8, 0, 0, 123456, tzinfo=UTC)),
        ("1970-01-01T00:00:00Z", EARLIEST),
        ("9999-01-01T00:00:00Z", LATEST),
    ],
)
def test_rfc3339_times_are_read_in_utc(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "1000",
        "2026-12-01",
        "2026-12-01T08:00Z",
        "2026-12-01T08:00:00",
        "2026-12-01 08:00:00Z",
        "2026-13-01T08:00:00Z",
        "2026-02-30T08:00:00Z",
        "2026-12-01T08:00:00+24:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "1969-12-31T23:59:59Z",
        "２０２６-12-01T08:00:00Z",  # full-width digits
        " 2026-12-01T08:00:00Z",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"time|between"):
        parse_time(text)


@given(st.text(max_size=40))
def test_no_text_makes_the_time_reader_fail_otherwise(text: str) -> None:
    try:
        parsed = parse_time(text)
    except ValueError:
        return
    assert EARLIEST <= parsed <= LATEST


def test_counts_are_digits_only() -> None:
    assert parse_count("50") == 50
    for text in ("+50", "5e1", "50.0", "true", "", " 50", "٥٠", "1" * 10):
        with pytest.raises(ValueError, match="whole number"):
            parse_count(text)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"a": 1, "a": 2}', "more than once"),
        (b'{"a": {"b": 1, "b": 1}}', "more than once"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b"[1]", "JSON object"),
        (b'"x"', "JSON object"),
        (b"{", "not JSON"),
        (b"\xff", "UTF-8"),
        (b'{"a": "x\\u0000"}', "NUL"),
        (b'{"a\\u0000": 1}', "NUL"),
        (b'{"a": ["\\ud800"]}', "surrogate"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_ambiguous_or_unstorable_bodies_are_refused(raw: bytes, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        parse_body(raw)


def test_an_empty_body_is_an_empty_object() -> None:
    assert parse_body(b"") == {}
    assert parse_body(b" \n") == {}
    assert parse_body(b'{"minutes": 30}') == {"minutes": 30}


def test_bad_text_finds_nul_and_surrogates_anywhere() -> None:
    assert bad_text("ok") is None
    assert bad_text({"k": ["ok", 1, None]}) is None
    assert bad_text("a\x00b") == "a NUL character"
    assert bad_text({"k": ["\ud800"]}) == "a character that is not Unicode (a lone surrogate)"


def test_the_anonymous_limit_counts_per_client_and_window() -> None:
    limit = AnonymousAuditLimit(rows_per_window=2, window_s=60, max_addresses=2)
    decided = [limit.decide("a", 120.0 + i).audit for i in range(4)]
    assert decided == [True, True, False, False]
    assert limit.decide("b", 125.0).audit  # another client has its own budget
    over = limit.decide("c", 126.0)  # a third address in the window: the shared bucket
    assert (over.client, over.audit) == (OVERFLOW, True)
    assert limit.decide("a", 180.0).audit  # a new window
    assert limit.decide("a", 181.0).window_start == 180.0


def test_pages_get_a_same_origin_policy_and_everything_no_store() -> None:
    from api.problems import PAGE_POLICY, secure

    api: dict[str, str] = {"Server": "Python/3.11 aiohttp/3.14"}
    secure(api)
    assert api["Content-Security-Policy"].startswith("default-src 'none'")
    assert (api["Cache-Control"], api["Server"]) == ("no-store", "homeward")
    page: dict[str, str] = {}
    secure(page, page=True)
    assert page["Content-Security-Policy"] == PAGE_POLICY
    own = {"Content-Security-Policy": "default-src 'self' https://cdn.example"}
    secure(own, page=True)
    assert own["Content-Security-Policy"] == "default-src 'self' https://cdn.example"
