"""End to end: late readings published over MQTT that would have breached a rule are
stored as history and listed for review — on the API for the patient's team and on
the command line — and a person closes one, once; every read and every attempt is in
the audit log (issue 14, item 10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
import pytest
from click.testing import CliRunner

from alerts import escalation_store
from alerts.teams import load_org_file
from api.tokens import issue_token
from commands.main import cli
from devices.registry import add_device, add_patient
from support import (
    Publisher,
    async_wait_until,
    count_rows,
    make_settings,
    purge_session,
    reading_payload,
    running_service,
)

EXAMPLE = (Path(__file__).parents[2] / "deploy" / "teams.example.yaml").read_text()
NHS = "9434765919"


async def test_late_readings_are_listed_closed_once_and_audited(
    db_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        escalation_store.load_organisation(conn, load_org_file(EXAMPLE), EXAMPLE)
        add_patient(
            conn, nhs_number=NHS, name="Late Patient", team="deal", conditions=["heart_failure"]
        )
        add_device(conn, "sc-1", patient_nhs_number=NHS)
        conn.commit()
        tokens = {
            who: issue_token(conn, now=now, staff_id=who)[1] for who in ("deal.mn1", "dover.mn1")
        }
        tokens["patient"] = issue_token(conn, now=now, nhs_number=NHS)[1]
    settings = make_settings(db_url, broker_url)
    pub = Publisher(broker_url)
    answers: dict[str, tuple[int, Any]] = {}
    try:
        async with running_service(settings) as service, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{service.http_port}/api/v1"
            # A buffered upload from last week arriving now: 3.4 kg in two days, late.
            for day, weight in ((9, 80.0), (8, 80.1), (7, 83.5)):
                payload = reading_payload(
                    f"old-{day}",
                    [("body_weight", weight, "kg")],
                    measured_at=now - timedelta(days=day),
                )
                pub.publish(settings.readings_topic("sc-1"), payload)
            await async_wait_until(lambda: service.pipeline.stats.stored == 3, what="history")
            await async_wait_until(
                lambda: count_rows(db_url, "SELECT count(*) FROM late_reviews") >= 1,
                what="a late review",
            )

            async def call(method: str, path: str, who: str, body: Any = None) -> tuple[int, Any]:
                headers = {"Authorization": f"Bearer {tokens[who]}"}
                data = None if body is None else orjson.dumps(body)
                async with http.request(method, f"{base}{path}", headers=headers, data=data) as r:
                    return r.status, await r.json(content_type=None)

            answers["list"] = await call("GET", "/late-reviews", "deal.mn1")
            review = answers["list"][1]["late_reviews"][0]["review_id"]  # the first open one
            answers["patient"] = await call("GET", "/late-reviews", "patient")
            answers["dover list"] = await call("GET", "/late-reviews", "dover.mn1")
            answers["dover close"] = await call(
                "POST", f"/late-reviews/{review}/close", "dover.mn1", {"note": "x"}
            )
            answers["close"] = await call(
                "POST", f"/late-reviews/{review}/close", "deal.mn1", {"note": "rang: scales moved"}
            )
            answers["again"] = await call("POST", f"/late-reviews/{review}/close", "deal.mn1")
            answers["closed"] = await call("GET", "/late-reviews?state=closed", "deal.mn1")
    finally:
        pub.close()
        purge_session(settings)

    review = check_api_answers(answers)
    check_command_line(db_url, review, monkeypatch)
    with psycopg.connect(db_url) as conn:
        audited = conn.execute(
            "SELECT actor, action, allowed, status FROM audit_log"
            " WHERE action LIKE '%late_review%' ORDER BY audit_id"
        ).fetchall()
        reviewed = conn.execute(
            "SELECT reviewed_by FROM late_reviews WHERE review_id = %s", (review,)
        )
        assert reviewed.fetchone() == ("deal.mn1",)
    assert audited == [
        ("staff:deal.mn1", "read_late_reviews", True, 200),
        ("patient:" + NHS, "read_late_reviews", False, 403),
        ("staff:dover.mn1", "read_late_reviews", True, 200),
        ("staff:dover.mn1", "close_late_review", False, 404),
        ("staff:deal.mn1", "close_late_review", True, 200),
        ("staff:deal.mn1", "close_late_review", True, 409),
        ("staff:deal.mn1", "read_late_reviews", True, 200),
        ("cli:deal.mn2", "list_late_reviews", True, 0),
        ("cli:deal.mn2", "close_late_review", False, 0),
    ]


def check_api_answers(answers: dict[str, tuple[int, Any]]) -> int:
    status, listed = answers["list"]
    assert status == 200
    assert listed["team"] == "deal"
    assert {r["nhs_number"] for r in listed["late_reviews"]} == {NHS}
    assert all(r["reviewed_at"] is None for r in listed["late_reviews"])
    assert answers["patient"][0] == 403
    assert answers["dover list"] == (200, {"team": "dover", "state": "open", "late_reviews": []})
    assert answers["dover close"][0] == 404
    status, closed = answers["close"]
    assert (status, closed["reviewed_by"], closed["review_note"]) == (
        200,
        "deal.mn1",
        "rang: scales moved",
    )
    assert answers["again"][0] == 409
    review = int(closed["review_id"])
    assert [r["review_id"] for r in answers["closed"][1]["late_reviews"]] == [review]
    return review


def check_command_line(db_url: str, review: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The command line: list as a named person, close again (refused, on the record).
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    runner = CliRunner()
    shown = runner.invoke(
        cli, ["--actor", "deal.mn2", "late-reviews", "list", "--state", "all", "--json"]
    )
    assert shown.exit_code == 0, shown.output
    assert next((r["review_id"], r["reviewed_by"]) for r in orjson.loads(shown.stdout)) == (
        review,
        "deal.mn1",
    )
    refused = runner.invoke(
        cli, ["--actor", "deal.mn2", "late-reviews", "close", str(review), "--by", "deal.mn2"]
    )
    assert refused.exit_code == 2
    assert "already closed" in refused.stderr
