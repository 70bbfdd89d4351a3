"""The HTTP API over real HTTP against a real PostgreSQL: tokens, who sees what, the team
queue, readings raw and rolled up, bad parameters, and the audit of every access."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from api_support import (  # fixtures: api, seeded, clock
    DEAL_NHS,
    DOVER_NHS,
    HOUR,
    NOW,
    QUIET_NHS,
    UNKNOWN_NHS,
    Api,
    alert_id,
    api,
    audit_rows,
    clock,
    post,
    seeded,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

__all__ = ["api", "clock", "seeded"]


async def test_no_forged_expired_or_revoked_token_gets_in(api: Api, db_url: str) -> None:
    api.tokens["forged"] = "hw_" + "A" * 43
    for who in (None, "forged", "expired", "revoked"):
        status, body, response = await api.get(f"patients/{DEAL_NHS}/readings", who)
        assert status == 401, who
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "authentication required" in body["error"]
    rows = audit_rows(db_url)
    assert len(rows) == 4
    assert all(r[0] == "anonymous" and r[3] is False and r[4] == 401 for r in rows)


async def test_a_nurse_reads_her_team_patients_readings_in_canonical_units(
    api: Api, db_url: str, seeded: dict[str, Any]
) -> None:
    status, body, _ = await api.get(f"patients/{DEAL_NHS}/readings", "deal.mn1")
    assert status == 200
    assert body["patient"] == {"nhs_number": DEAL_NHS, "name": "Dee Deal", "team": "deal"}
    got = [(r["metric"], r["value"], r["unit"]) for r in body["readings"]]
    # the last 7 days by default, oldest first: the 9-day-old weight is outside
    assert got == [
        ("body_weight", 81.5, "kg"),
        ("diastolic_bp", 80.0, "mm[Hg]"),
        ("systolic_bp", 120.0, "mm[Hg]"),
        ("diastolic_bp", 90.0, "mm[Hg]"),
        ("systolic_bp", 130.0, "mm[Hg]"),
        ("diastolic_bp", 100.0, "mm[Hg]"),
        ("systolic_bp", 140.0, "mm[Hg]"),
    ]
    assert body["readings"][0]["age_s"] >= 2 * 86_400 - 5  # every reading shows its age
    assert body["truncated"] is False
    (actor, action, patient_id, allowed, status_code, detail) = audit_rows(db_url)[-1]
    assert (actor, action, patient_id, allowed, status_code) == (
        "staff:deal.mn1",
        "read_readings",
        seeded["deal"],
        True,
        200,
    )
    assert detail["reason"] == "patient of the team"


async def test_hourly_and_daily_rollups_match_the_readings(api: Api) -> None:
    status, body, _ = await api.get(
        f"patients/{DEAL_NHS}/readings", "deal.mn1", resolution="hour", metric="systolic_bp"
    )
    assert status == 200
    assert [(r["n"], r["mean"], r["min"], r["max"], r["unit"]) for r in body["readings"]] == [
        (3, 130.0, 120.0, 140.0, "mm[Hg]")
    ]
    assert datetime.fromisoformat(body["readings"][0]["time"]) == HOUR
    status, body, _ = await api.get(
        f"patients/{DEAL_NHS}/readings",
        "deal.mn1",
        resolution="day",
        metric="body_weight",
        **{"from": (NOW - timedelta(days=30)).isoformat()},
    )
    assert status == 200
    assert [(r["n"], r["mean"]) for r in body["readings"]] == [(1, 80.0), (1, 81.5)]


@pytest.mark.parametrize("limit", [1, 2, 3, 4])
async def test_pages_are_cut_between_instants_and_reassemble_exactly(api: Api, limit: int) -> None:
    """A blood pressure is two readings at one instant: whatever the page size, paging
    from ``next_from`` returns every reading once (limit 1: each page one instant)."""
    seen: list[tuple[str, str]] = []
    since = (NOW - timedelta(days=7)).isoformat()
    for _ in range(20):
        status, body, _ = await api.get(
            f"patients/{DEAL_NHS}/readings", "deal.mn1", limit=limit, **{"from": since}
        )
        assert status == 200
        seen += [(r["time"], r["metric"]) for r in body["readings"]]
        if not body["truncated"]:
            break
        since = body["next_from"]
    _, whole, _ = await api.get(f"patients/{DEAL_NHS}/readings", "deal.mn1")
    assert seen == [(r["time"], r["metric"]) for r in whole["readings"]]


async def test_another_teams_patient_and_an_unknown_one_look_the_same(
    api: Api, db_url: str, seeded: dict[str, Any]
) -> None:
    for nhs in (DOVER_NHS, UNKNOWN_NHS):
        status, body, _ = await api.get(f"patients/{nhs}/readings", "deal.mn1")
        assert status == 404
        assert body["error"] == "no such patient among those you may see"
    rows = audit_rows(db_url)[-2:]
    assert [(r[2], r[3], r[4], r[5]["reason"]) for r in rows] == [
        (seeded["dover"], False, 404, "not a patient of the team"),
        (None, False, 404, "no such patient"),
    ]


async def test_out_of_hours_cover_sees_the_patients_with_an_unresolved_alert(api: Api) -> None:
    """Rapid response covers Deal and Dover out of hours (the teams file): it sees their
    patients with an unresolved alert, and no other."""
    status, body, _ = await api.get(f"patients/{DOVER_NHS}/readings", "skc-rapid-response.rr1")
    assert status == 200
    assert [r["value"] for r in body["readings"]] == [150.0]
    status, _, _ = await api.get(f"patients/{QUIET_NHS}/readings", "skc-rapid-response.rr1")
    assert status == 404  # a Deal patient, but no alert of theirs is open


async def test_a_patient_sees_only_their_own_record_and_no_queue(api: Api, db_url: str) -> None:
    status, body, _ = await api.get("me", "patient")
    assert (status, body["kind"], body["id"], body["roles"]) == (
        200,
        "patient",
        DEAL_NHS,
        ["patient"],
    )
    status, body, _ = await api.get(f"patients/{DEAL_NHS}/readings", "patient")
    assert status == 200
    assert len(body["readings"]) == 7
    status, body, _ = await api.get(f"patients/{DEAL_NHS}/alerts", "patient")
    assert status == 200
    assert {a["priority"] for a in body["alerts"]} == {"red", "amber"}
    status, _, _ = await api.get(f"patients/{DOVER_NHS}/readings", "patient")
    assert status == 404
    status, body, _ = await api.get("queue", "patient")
    assert status == 403
    assert "patients do not see the team's queue" in body["error"]
    actions = [(r[0], r[1], r[3]) for r in audit_rows(db_url)]
    assert actions == [
        (f"patient:{DEAL_NHS}", "read_identity", True),
        (f"patient:{DEAL_NHS}", "read_readings", True),
        (f"patient:{DEAL_NHS}", "read_alerts", True),
        (f"patient:{DEAL_NHS}", "read_readings", False),
        (f"patient:{DEAL_NHS}", "read_queue", False),
    ]


async def test_a_role_without_clinical_access_reads_nothing_clinical(api: Api) -> None:
    status, body, _ = await api.get("me", "deal.sw1")
    assert (status, body["clinical_access"]) == (200, False)
    assert (await api.get(f"patients/{DEAL_NHS}/readings", "deal.sw1"))[0] == 404
    assert (await api.get("queue", "deal.sw1"))[0] == 403


async def test_the_queue_is_the_teams_own_red_first(
    api: Api, db_url: str, seeded: dict[str, Any]
) -> None:
    status, body, _ = await api.get("queue", "deal.mn1")
    assert status == 200
    assert body["team"] == "deal"
    assert [(a["priority"], a["nhs_number"]) for a in body["alerts"]] == [
        ("red", DEAL_NHS),
        ("amber", DEAL_NHS),
    ]
    assert all(a["age_s"] >= 0 for a in body["alerts"])
    status, body, _ = await api.get("queue", "deal.mn1", team="dover")
    assert status == 403
    assert "another team's queue" in body["error"]
    status, body, _ = await api.get("queue", "skc-rapid-response.rr1")
    # the teams it covers out of hours, each alert with its team, red first
    assert [(a["priority"], a["nhs_number"], a["team_id"]) for a in body["alerts"]] == [
        ("red", DEAL_NHS, "deal"),
        ("red", DOVER_NHS, "dover"),
        ("amber", DEAL_NHS, "deal"),
    ]
    allowed = [r for r in audit_rows(db_url) if r[1] == "read_queue" and r[3]]
    assert allowed[0][5]["patients"] == [seeded["deal"]]  # whose data the queue showed


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "100000"}, "limit"),
        ({"limit": ["1", "9"]}, "limit"),
        ({"from": "2026-11-01T00:00:00"}, "from"),  # no offset
        ({"from": "yesterday"}, "from"),
        ({"metric": "cholesterol"}, "unknown metric"),
        ({"resolution": "minute"}, "resolution"),
        ({"colour": "blue"}, "colour"),
        (
            {"from": "2026-06-01T00:00:00+00:00", "to": "2026-11-01T00:00:00+00:00"},
            "at most 31 days",
        ),
        ({"from": "2026-11-02T00:00:00+00:00", "to": "2026-11-01T00:00:00+00:00"}, "before"),
    ],
)
async def test_bad_parameters_are_a_clear_400(
    api: Api, params: dict[str, Any], problem: str
) -> None:
    status, body, _ = await api.get(f"patients/{DEAL_NHS}/readings", "deal.mn1", **params)
    assert status == 400
    assert problem in str(body)


async def test_an_invalid_nhs_number_is_a_400(api: Api) -> None:
    status, body, _ = await api.get("patients/1234567890/readings", "deal.mn1")
    assert status == 400
    assert "NHS number" in body["error"]


def test_the_audit_log_is_append_only(db_url: str, seeded: dict[str, Any]) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO audit_log (actor, role, action, allowed, status)"
            " VALUES ('staff:x', 'gp', 'read_queue', true, 200)"
        )
        conn.commit()
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM audit_log")


async def test_tokens_from_the_command_line_and_the_audit_log(
    api: Api, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orjson
    from click.testing import CliRunner

    from commands.main import cli

    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    runner = CliRunner()
    issued = runner.invoke(cli, ["token", "issue", "--staff", "deal.gp1", "--days", "1", "--json"])
    assert issued.exit_code == 0, issued.output
    token = orjson.loads(issued.stdout)
    api.tokens["gp"] = token["token"]
    assert token["token"].startswith("hw_")
    assert (await api.get("queue", "gp"))[0] == 200
    listed = orjson.loads(runner.invoke(cli, ["token", "list", "--json"]).stdout)
    assert token["token"] not in str(listed)  # only its hash is stored
    assert any(t["subject"] == "staff:deal.gp1" for t in listed)
    revoked = runner.invoke(cli, ["token", "revoke", str(token["token_id"])])
    assert revoked.exit_code == 0, revoked.output
    assert (await api.get("queue", "gp"))[0] == 401
    unknown = runner.invoke(cli, ["token", "issue", "--staff", "nobody"])
    assert unknown.exit_code == 2
    assert "no staff member 'nobody'" in unknown.stderr
    both = runner.invoke(cli, ["token", "issue", "--staff", "deal.gp1", "--patient", DEAL_NHS])
    assert both.exit_code == 2
    audited = orjson.loads(
        runner.invoke(cli, ["audit", "list", "--actor", "staff:deal.gp1", "--json"]).stdout
    )
    assert [(a["action"], a["allowed"]) for a in audited] == [("read_queue", True)]


async def test_a_nurse_acknowledges_then_resolves_and_a_second_ack_is_refused(
    api: Api, db_url: str, seeded: dict[str, Any]
) -> None:
    red = alert_id(db_url, seeded["deal"], "red")
    first, second = await asyncio.gather(  # concurrent: the row lock lets one through
        post(api, f"alerts/{red}/acknowledge", "deal.mn1"),
        post(api, f"alerts/{red}/acknowledge", "deal.mn1"),
    )
    assert sorted([first[0], second[0]]) == [200, 409]
    done = first[1] if first[0] == 200 else second[1]
    assert (done["event"], done["by"], done["state"]) == (
        "acknowledged",
        "deal.mn1",
        "acknowledged",
    )
    status, body = await post(
        api, f"alerts/{red}/notes", "deal.mn1", {"text": "Rang: BP cuff re-seated"}
    )
    assert status == 200
    status, body = await post(
        api,
        f"alerts/{red}/resolve",
        "deal.mn1",
        {"outcome": "advice_given", "note": "repeat at 18:00"},
    )
    assert (status, body["state"], body["outcome"]) == (200, "resolved", "advice_given")
    _, queue, _ = await api.get("queue", "deal.mn1")
    assert red not in [a["alert_id"] for a in queue["alerts"]]
    with psycopg.connect(db_url) as conn:
        story = conn.execute(
            "SELECT kind, actor FROM alert_events WHERE alert_id = %s ORDER BY event_id", (red,)
        ).fetchall()
    assert story == [
        ("acknowledged", "deal.mn1"),
        ("note_added", "deal.mn1"),
        ("resolved", "deal.mn1"),
    ]
    acts = [(r[1], r[3], r[4]) for r in audit_rows(db_url) if r[1].endswith("_alert")]
    assert sorted(acts[:2]) == [("acknowledge_alert", True, 200), ("acknowledge_alert", True, 409)]
    assert acts[2:] == [("note_alert", True, 200), ("resolve_alert", True, 200)]


async def test_a_nurse_ends_a_snooze_early_and_every_attempt_is_audited(
    api: Api, db_url: str, seeded: dict[str, Any]
) -> None:
    red = alert_id(db_url, seeded["deal"], "red")
    status, body = await post(api, f"alerts/{red}/unsnooze", "deal.mn1")
    assert (status, body["error"]) == (409, "This alert is not snoozed.")
    body_in = {"minutes": 30, "reason": "patient at the surgery"}
    assert (await post(api, f"alerts/{red}/snooze", "deal.mn1", body_in))[0] == 200
    status, body = await post(api, f"alerts/{red}/unsnooze", "deal.mn1")
    assert (status, body["event"], body["by"]) == (200, "unsnoozed", "deal.mn1")
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT snoozed_until FROM alerts WHERE alert_id = %s", (red,))
        assert row.fetchone() == (None,)
    acts = [(r[1], r[4]) for r in audit_rows(db_url) if r[1].endswith("snooze_alert")]
    assert acts == [("unsnooze_alert", 409), ("snooze_alert", 200), ("unsnooze_alert", 200)]


async def test_nobody_outside_the_team_and_no_patient_acts_on_an_alert(
    api: Api, db_url: str, seeded: dict[str, Any]
) -> None:
    red = alert_id(db_url, seeded["deal"], "red")
    for who in ("patient", "dover.mn1", "deal.sw1"):
        status, body = await post(api, f"alerts/{red}/acknowledge", who)
        assert status == 404, who
        assert body["error"] == "no such alert among those you may act on"
    status, _ = await post(api, "alerts/999999/acknowledge", "deal.mn1")
    assert status == 404
    # rapid response covers Dover out of hours: it may act on the Dover patient's alert
    dover_red = alert_id(db_url, seeded["dover"], "red")
    status, _ = await post(api, f"alerts/{dover_red}/acknowledge", "skc-rapid-response.rr1")
    assert status == 200
    refused = [r for r in audit_rows(db_url) if r[1] == "acknowledge_alert" and not r[3]]
    assert [r[0] for r in refused] == [
        f"patient:{DEAL_NHS}",
        "staff:dover.mn1",
        "staff:deal.sw1",
        "staff:deal.mn1",
    ]
    with psycopg.connect(db_url) as conn:
        state = conn.execute("SELECT state FROM alerts WHERE alert_id = %s", (red,)).fetchone()
    assert state == ("open",)


@pytest.mark.parametrize(
    ("action", "body", "problem"),
    [
        ("acknowledge", {"by": "deal.gp1"}, "by"),  # the actor is the token's, never the body's
        ("acknowledge", {"state": "resolved"}, "state"),
        ("resolve", {}, "outcome"),
        ("resolve", {"outcome": "cured"}, "outcome"),
        ("snooze", {"minutes": 120, "reason": "patient at the GP"}, "hour"),  # red: 1 h at most
        ("snooze", {"minutes": -5, "reason": "x"}, "minutes"),
        ("notes", {"text": ""}, "text"),
        ("acknowledge", b"{not json", "not JSON"),
        ("acknowledge", b"[1, 2]", "JSON object"),
    ],
)
async def test_a_bad_action_is_a_clear_400_and_changes_nothing(
    api: Api, db_url: str, seeded: dict[str, Any], action: str, body: Any, problem: str
) -> None:
    red = alert_id(db_url, seeded["deal"], "red")
    raw = body if isinstance(body, bytes) else None
    status, answer = await post(api, f"alerts/{red}/{action}", "deal.mn1", body, raw=raw)
    assert status == 400
    assert problem in str(answer)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT state, snoozed_until, (SELECT count(*) FROM alert_events WHERE alert_id = %s)"
            " FROM alerts WHERE alert_id = %s",
            (red, red),
        ).fetchone()
    assert row == ("open", None, 0)


async def test_the_openapi_document_is_valid_and_matches_the_routes(api: Api) -> None:
    from openapi_spec_validator import validate

    async with api.session.get(f"{api.base}openapi.json") as r:  # no token needed
        assert r.status == 200
        spec = await r.json()
    validate(spec)
    assert set(spec["paths"]) == {
        "/api/v1/me",
        "/api/v1/queue",
        "/api/v1/outcomes",
        "/api/v1/patients/{nhs_number}/readings",
        "/api/v1/patients/{nhs_number}/alerts",
        "/api/v1/alerts/{alert_id}/acknowledge",
        "/api/v1/alerts/{alert_id}/resolve",
        "/api/v1/alerts/{alert_id}/snooze",
        "/api/v1/alerts/{alert_id}/unsnooze",
        "/api/v1/alerts/{alert_id}/notes",
        "/api/v1/late-reviews",
        "/api/v1/late-reviews/{review_id}/close",
    }
    readings = spec["paths"]["/api/v1/patients/{nhs_number}/readings"]["get"]
    assert {p["name"] for p in readings["parameters"]} == {
        "nhs_number",
        "from",
        "to",
        "metric",
        "resolution",
        "limit",
    }


QUERY_VALUES = st.one_of(
    st.text(max_size=40),
    st.integers(-(10**20), 10**20).map(str),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.sampled_from(["raw", "hour", "day", "systolic_bp", "spo2,heart_rate", "", "0"]),
)


# What docs/api.md ("Errors") says each request may answer: a patient's data is 200, a bad
# parameter 400, a patient the caller may not see 404; the queue of another team is 403.
DOCUMENTED_STATUSES = {
    "readings": {200, 400, 404},
    "alerts": {200, 400, 404},
    "nhs": {400, 404},
    "queue": {200, 400, 403},
}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.sampled_from(["from", "to", "metric", "resolution", "limit", "state", "team", "x"]),
        QUERY_VALUES,
        max_size=4,
    ),
    st.sampled_from(["readings", "alerts", "queue", "nhs"]),
)
async def test_no_query_string_makes_the_api_fail(
    api: Api, params: dict[str, str], where: str
) -> None:
    """Whatever the parameters, an answer the client can act on — never a 500."""
    path = {
        "readings": f"patients/{DEAL_NHS}/readings",
        "alerts": f"patients/{DEAL_NHS}/alerts",
        "queue": "queue",
        "nhs": f"patients/{params.get('x', '')}x/readings",
    }[where]
    status, body, _ = await api.get(path, "deal.mn1", **params)
    assert status in DOCUMENTED_STATUSES[where], (status, body)
    assert status == 200 or body["error"]
