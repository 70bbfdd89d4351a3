"""Who may change a patient's thresholds (api/access.py), and the web app's pure parts:
session expiry, the sign-in rate limit, safe redirects, charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.access import Kind, PatientRef, Principal, may_change_rules
from web.auth import safe_next
from web.charts import Band, Point, chart
from web.sessions import Ended, Lifetimes, RateLimit, SessionTimes, expiry, same_token

DEAL = PatientRef(1, "deal")
RR_ALERT = PatientRef(2, "deal", frozenset({"skc-rr"}))


def staff(team: str, *roles: str) -> Principal:
    return Principal(Kind.STAFF, "s1", "Staff", team, frozenset(roles))


@pytest.mark.parametrize(
    ("who", "patient", "allowed"),
    [
        (staff("deal", "gp"), DEAL, True),
        (staff("deal", "community_matron"), DEAL, True),
        (staff("deal", "monitoring_nurse"), DEAL, False),  # reads, does not prescribe
        (staff("dover", "gp"), DEAL, False),  # not their patient
        (staff("skc-rr", "gp"), RR_ALERT, True),  # covering an unresolved alert
        (staff("deal", "social_worker"), DEAL, False),
        (Principal(Kind.PATIENT, "9434765919", "Pat", "deal", patient_id=1), DEAL, False),
    ],
)
def test_who_may_change_thresholds(who: Principal, patient: PatientRef, allowed: bool) -> None:
    assert may_change_rules(who, patient).allowed is allowed


T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
LIFE = Lifetimes(idle=timedelta(minutes=30), absolute=timedelta(hours=12))


@pytest.mark.parametrize(
    ("last_seen", "now", "ended", "why"),
    [
        (T0, T0 + timedelta(minutes=29), None, None),
        (T0, T0 + timedelta(minutes=30), None, Ended.IDLE),
        (T0 + timedelta(hours=11, minutes=50), T0 + timedelta(hours=12), None, Ended.ABSOLUTE),
        (T0, T0 + timedelta(minutes=1), T0, Ended.SIGNED_OUT),
    ],
)
def test_a_session_ends_when_idle_too_old_or_signed_out(
    last_seen: datetime, now: datetime, ended: datetime | None, why: Ended | None
) -> None:
    times = SessionTimes(T0, last_seen, T0 + LIFE.absolute, ended)
    assert expiry(times, LIFE, now) is why


def test_the_rate_limit_counts_user_and_address() -> None:
    limit = RateLimit(5, timedelta(minutes=15))
    assert not limit.refuses(4, 19)
    assert limit.refuses(5, 0)
    assert limit.refuses(0, 20)


def test_tokens_compare_in_full() -> None:
    assert same_token("abc", "abc")
    assert not same_token("abc", "abd")
    assert not same_token("abc", None)
    assert not same_token("", "")


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("/queue", "/queue"),
        ("/patients/9434765919?days=30", "/patients/9434765919?days=30"),
        ("//evil.example/", None),
        ("/\\evil.example", None),
        ("https://evil.example/", None),
        ("/queue\r\nSet-Cookie: x=1", None),
        ("", None),
    ],
)
def test_next_stays_on_this_site(target: str, safe: str | None) -> None:
    assert safe_next(target) == safe


def test_a_chart_draws_its_bands_and_escapes_its_text() -> None:
    points = [Point(T0 + timedelta(hours=h), 120.0 + h) for h in range(5)]
    svg = chart(
        title="<b>Systolic</b>",
        unit="mm[Hg]",
        points=points,
        bands=[Band("high", 150, "amber", "amber ≥ 150"), Band("high", 180, "red", "red ≥ 180")],
        since=T0,
        until=T0 + timedelta(days=1),
        possible=(0, 300),
    )
    assert svg.count("<circle") == 5
    assert "amber ≥ 150" in svg
    assert "red ≥ 180" in svg
    assert "<b>" not in svg
    assert "&lt;b&gt;Systolic&lt;/b&gt;: 5 readings, from 120 to 124 mm[Hg]" in svg


def test_a_chart_without_readings_says_so() -> None:
    svg = chart(
        title="Weight",
        unit="kg",
        points=[],
        bands=[],
        since=T0,
        until=T0 + timedelta(days=7),
        possible=(1, 400),
    )
    assert "Weight: no readings in this period" in svg
