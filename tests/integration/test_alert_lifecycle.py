"""The alert lifecycle and escalation keep their promises on the stored path: the rule
stage, a person's command and the escalation tick, against a real PostgreSQL with an
injected clock (issue 13). Batching is decided by the real batch writer and rule stage;
MQTT delivery into them is covered by tests/e2e/test_deterioration.py."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts import escalation_store
from alerts.commands import Acknowledge, Snooze, Unsnooze
from alerts.engine import Decisions
from alerts.escalation_store import TARGET_MISSING
from alerts.lifecycle_store import apply_command
from alerts.rules.types import Cleared, Priority, RuleHit
from alerts.store import RuleStage, write_decisions
from alerts.teams import load_org_file
from commands.main import cli
from devices.registry import add_device, add_patient
from homeward.domain import DeviceMessage, Reading
from homeward.nhs import check_digit
from ingest.mqtt_source import Inbound
from ingest.writer import BatchStore, Item
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
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # in hours (London = UTC in November)
SEVERE = "threshold:systolic_bp:severe"
NEWS2 = "news2"
_nhs_counter = iter(range(100_000_000, 999_999_999, 7919))


def new_nhs() -> str:
    while True:
        first = f"9{next(_nhs_counter) % 100_000_000:08d}"
        digit = check_digit(first)
        if digit is not None:
            return f"{first}{digit}"


def seed(db_url: str, org_text: str = EXAMPLE, team: str = "deal") -> int:
    with psycopg.connect(db_url) as conn:
        patient = add_patient(
            conn, nhs_number=new_nhs(), name="Lifecycle", team=team, conditions=["hypertension"]
        )
        escalation_store.load_organisation(conn, load_org_file(org_text), org_text)
        conn.commit()
    return patient.patient_id


def hit(rule: str, priority: Priority, value: float, at: datetime) -> RuleHit:
    kind = "news2" if rule == NEWS2 else "threshold"
    return RuleHit(rule, kind, None, priority, value, at, f"{rule} {value:g}", "high")


async def rules(db_url: str, now: datetime, decisions: Decisions) -> None:
    """The rule stage's write, as ingest runs it inside a batch's transaction."""
    async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
        await write_decisions(conn.cursor(), decisions, now)


async def tick(db_url: str, at: datetime) -> escalation_store.TickResult:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        return await escalation_store.tick(conn, at)


async def person(db_url: str, alert: int, command: Any, now: datetime) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await apply_command(conn, alert, command, now)


def one(db_url: str, sql: str, *args: Any) -> Any:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(sql, args).fetchone()
    assert row is not None, sql
    return row[0] if len(row) == 1 else row


def alert_of(db_url: str, patient: int, rule: str) -> int:
    return int(
        one(db_url, "SELECT alert_id FROM alerts WHERE patient_id = %s AND rule_id = %s",
            patient, rule)
    )  # fmt: skip


def kinds(db_url: str, alert: int) -> list[str]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT kind FROM alert_events WHERE alert_id = %s ORDER BY event_id", (alert,)
        ).fetchall()
    return [str(k) for (k,) in rows]


def fired(db_url: str, alert: int) -> list[tuple[int, list[str]]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT data->'level', data->'notified' FROM alert_events"
            " WHERE alert_id = %s AND kind = 'escalated' ORDER BY event_id",
            (alert,),
        ).fetchall()
    return [(int(level), list(people)) for level, people in rows]


def renotified(db_url: str, alert: int) -> list[str]:
    """Who was told again outside a step (in-app and e-mail targets)."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT target FROM notifications WHERE alert_id = %s AND idempotency_key LIKE %s"
            " ORDER BY notification_id",
            (alert, f"alert-{alert}-request-%"),
        ).fetchall()
    return [str(t) for (t,) in rows]


# 2. A rise in priority withdraws an acknowledgement or snooze, re-plans, notifies at once.


@pytest.mark.parametrize("hold", ["acknowledged", "snoozed"])
async def test_amber_to_red_reopens_replans_under_red_and_notifies_at_once(
    db_url: str, hold: str
) -> None:
    patient = seed(db_url)
    t = MONDAY_10
    await rules(db_url, t, Decisions(hits=[(patient, hit(NEWS2, Priority.AMBER, 5, t))]))
    alert = alert_of(db_url, patient, NEWS2)
    assert (await tick(db_url, t)).fired == 1  # amber level 1: the nurse on duty
    if hold == "acknowledged":
        await person(db_url, alert, Acknowledge("deal.mn1", t + timedelta(minutes=1)), t)
    else:
        snooze = Snooze("deal.mn1", t, t + timedelta(hours=4), "GP visiting this afternoon")
        await person(db_url, alert, snooze, t + timedelta(minutes=1))
    later = t + timedelta(minutes=10)
    await rules(db_url, later, Decisions(hits=[(patient, hit(NEWS2, Priority.RED, 7, later))]))
    row = one(
        db_url,
        "SELECT priority, state, snoozed_until, ack_expires_at, plan_from FROM alerts"
        " WHERE alert_id = %s",
        alert,
    )
    assert row == ("red", "open", None, None, later)  # the hold given for amber is withdrawn
    result = await tick(db_url, later)
    assert (result.planned, result.renotified) == (1, 1)
    assert renotified(db_url, alert) == [
        "deal",
        "deal.mn1@example.invalid",
        "deal-spa@example.invalid",
    ]  # the current level is told at once
    # The red ladder from the rise: its level 1 at once, level 2 two minutes after it.
    assert result.fired == 1
    assert (await tick(db_url, later + timedelta(seconds=119))).fired == 0
    assert (await tick(db_url, later + timedelta(seconds=120))).fired == 1
    assert fired(db_url, alert) == [(1, ["deal.mn1"]), (1, ["deal.mn1"]), (2, ["deal.matron1"])]
    with psycopg.connect(db_url) as conn:
        steps = conn.execute(
            "SELECT step_no, withdrawn_at IS NOT NULL FROM escalation_steps"
            " WHERE alert_id = %s ORDER BY step_no",
            (alert,),
        ).fetchall()
        replanned = conn.execute(
            "SELECT data->>'priority', data->>'reason' FROM alert_events"
            " WHERE alert_id = %s AND kind = 'escalation_replanned'",
            (alert,),
        ).fetchone()
    assert [withdrawn for _, withdrawn in steps[:2]] == [False, True]  # amber's level 2
    assert [no for no, _ in steps[2:]][:2] == [3, 4]  # red numbered on from amber's steps
    assert replanned == ("red", "priority raised to red")
    story = kinds(db_url, alert)
    rise = story.index("notification_requested")
    assert story[rise - 1 : rise + 3] == [
        "updated",
        "notification_requested",
        "escalation_replanned",
        "escalated",
    ]


# 4. A new breach after "condition cleared" clears the mark and notifies again.


async def test_a_breach_after_condition_cleared_notifies_the_current_level(db_url: str) -> None:
    patient = seed(db_url)
    t = MONDAY_10
    await rules(db_url, t, Decisions(hits=[(patient, hit(SEVERE, Priority.RED, 186, t))]))
    alert = alert_of(db_url, patient, SEVERE)
    await tick(db_url, t)  # level 1: the nurse
    cleared = Cleared(SEVERE, t + timedelta(seconds=30), 150.0)
    await rules(db_url, t + timedelta(seconds=30), Decisions(clears=[(patient, cleared)]))
    assert one(db_url, "SELECT condition_cleared FROM alerts WHERE alert_id = %s", alert)
    again = t + timedelta(seconds=60)
    await rules(db_url, again, Decisions(hits=[(patient, hit(SEVERE, Priority.RED, 184, again))]))
    assert not one(db_url, "SELECT condition_cleared FROM alerts WHERE alert_id = %s", alert)
    assert (await tick(db_url, again)).renotified == 1
    assert "deal.mn1@example.invalid" in renotified(db_url, alert)
    reason = one(
        db_url,
        "SELECT data->>'reason' FROM alert_events WHERE alert_id = %s"
        " AND kind = 'notification_requested'",
        alert,
    )
    assert reason == "breached again after the condition had cleared"


# 3. A patient's readings are decided in measurement order, whatever the batching.


async def test_a_recovery_then_a_new_breach_in_one_batch_leaves_the_alert_breached(
    db_url: str,
) -> None:
    """The issue's case: 141 measured at 04:35:52, 150 at 04:37:04, in one batch."""
    patient = seed(db_url)
    t = MONDAY_10
    stage2 = "threshold:systolic_bp:stage2"
    await rules(db_url, t, Decisions(hits=[(patient, hit(stage2, Priority.AMBER, 152, t))]))
    recovered = Cleared(stage2, t + timedelta(minutes=2), 141.0)
    breach = hit(stage2, Priority.AMBER, 150, t + timedelta(minutes=3))
    later = t + timedelta(minutes=4)
    await rules(db_url, later, Decisions(hits=[(patient, breach)], clears=[(patient, recovered)]))
    cleared, latest = one(
        db_url, "SELECT condition_cleared, latest_value FROM alerts WHERE rule_id = %s", stage2
    )
    assert (cleared, latest) == (False, 150.0)


SYSTOLIC = [118.0, 141.0, 146.0, 150.0, 158.0, 172.0, 181.0, 186.0]


def _register(conn: psycopg.Connection[Any], device: str) -> int:
    nhs = new_nhs()
    patient = add_patient(
        conn, nhs_number=nhs, name="Batching", team="deal", conditions=["hypertension"]
    )
    add_device(conn, device, patient_nhs_number=nhs, valid_from=datetime(2020, 1, 1, tzinfo=UTC))
    return patient.patient_id


def _item(device: str, n: int, at: datetime, value: float) -> Item:
    message = DeviceMessage(device, f"m{n}", at, (Reading("systolic_bp", value, "mm[Hg]"),))
    inbound = Inbound(n + 1, 1, f"t/homeward/v1/devices/{device}/readings", b"", False, 1, 0.0)
    return Item(inbound, message)


def _states(db_url: str, patient: int) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT rule_id, state, priority, condition_cleared, hit_count, latest_value,"
            " worst_value, first_value FROM alerts WHERE patient_id = %s ORDER BY rule_id",
            (patient,),
        ).fetchall()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    values=st.lists(st.sampled_from(SYSTOLIC), min_size=2, max_size=9),
    cuts=st.sets(st.integers(1, 8)),
    shuffle=st.randoms(use_true_random=False),
)
async def test_any_batch_split_gives_the_alert_states_of_one_reading_per_batch(
    db_url: str, values: list[float], cuts: set[int], shuffle: Any
) -> None:
    """The same readings, split into batches at random (and in any order within a batch),
    end in the same alerts as when each reading is its own batch."""
    tag = f"{time.monotonic_ns()}"
    seed(db_url)  # the organisation in force (a patient needs a team)
    with psycopg.connect(db_url) as conn:
        split_patient = _register(conn, f"split-{tag}")
        single_patient = _register(conn, f"single-{tag}")
        conn.commit()
    start = datetime.now(UTC) - timedelta(minutes=30)  # recent: not late
    times = [start + timedelta(minutes=i) for i in range(len(values))]
    store = BatchStore(f"{db_url}", stage=RuleStage())
    try:
        readings = list(enumerate(zip(times, values, strict=True)))
        for i, (at, v) in readings:
            await store.write([_item(f"single-{tag}", i, at, v)])
        items = [_item(f"split-{tag}", i, at, v) for i, (at, v) in readings]
        bounds = [0, *sorted(c for c in cuts if c < len(items)), len(items)]
        for lo, hi in itertools.pairwise(bounds):
            batch = items[lo:hi]
            shuffle.shuffle(batch)
            await store.write(batch)
    finally:
        await store.close()
    assert _states(db_url, split_patient) == _states(db_url, single_patient)


# 5. Snooze end resumes where escalation paused, without a burst; early end likewise.


async def test_a_snooze_that_runs_out_resumes_without_a_burst(db_url: str) -> None:
    patient = seed(db_url)
    t = MONDAY_10
    await rules(db_url, t, Decisions(hits=[(patient, hit(SEVERE, Priority.RED, 186, t))]))
    alert = alert_of(db_url, patient, SEVERE)
    assert (await tick(db_url, t)).fired == 1  # level 1; level 2 due at +120 s
    snoozed_at = t + timedelta(seconds=60)
    snooze = Snooze("deal.mn1", snoozed_at, snoozed_at + timedelta(minutes=30), "on the phone")
    await person(db_url, alert, snooze, snoozed_at)
    assert (await tick(db_url, t + timedelta(minutes=20))).fired == 0
    # At the snooze's end levels 2, 3 and the repeat's level 1 had all fallen due; none
    # fires: escalation resumes where it paused, level 2 still 60 s away.
    end = snoozed_at + timedelta(minutes=30)
    assert (await tick(db_url, end)).fired == 0
    assert kinds(db_url, alert)[-1] == "snooze_ended"
    assert (await tick(db_url, end + timedelta(seconds=59))).fired == 0
    assert (await tick(db_url, end + timedelta(seconds=60))).fired == 1
    assert fired(db_url, alert)[-1] == (2, ["deal.matron1"])
    assert (await tick(db_url, end + timedelta(seconds=60 + 299))).fired == 0
    assert (await tick(db_url, end + timedelta(seconds=60 + 300))).fired == 2  # 3, then 1


async def test_a_snooze_ended_early_resumes_where_it_paused(db_url: str) -> None:
    patient = seed(db_url)
    t = MONDAY_10
    await rules(db_url, t, Decisions(hits=[(patient, hit(SEVERE, Priority.RED, 186, t))]))
    alert = alert_of(db_url, patient, SEVERE)
    await tick(db_url, t)
    snooze = Snooze("deal.mn1", t + timedelta(seconds=60), t + timedelta(minutes=45), "visit")
    await person(db_url, alert, snooze, t + timedelta(seconds=60))
    ended = t + timedelta(minutes=10)
    await person(db_url, alert, Unsnooze("deal.mn1", ended), ended)
    assert (await tick(db_url, ended + timedelta(seconds=59))).fired == 0
    assert (await tick(db_url, ended + timedelta(seconds=60))).fired == 1
    assert kinds(db_url, alert)[-2:] == ["unsnoozed", "escalated"]


# 6. In or out of hours is decided at each step's due time.


async def test_a_step_due_after_1830_goes_to_the_out_of_hours_team(db_url: str) -> None:
    patient = seed(db_url)
    t = datetime(2026, 11, 23, 18, 25, tzinfo=UTC)  # Monday 18:25 in London: in hours
    await rules(db_url, t, Decisions(hits=[(patient, hit(SEVERE, Priority.RED, 186, t))]))
    alert = alert_of(db_url, patient, SEVERE)
    await tick(db_url, t)  # level 1 at 18:25: the nurse on duty
    await tick(db_url, t + timedelta(minutes=2))  # level 2 at 18:27: the matron
    # Level 3 was due at 18:32, out of hours: the alert is planned again from 18:32 under
    # the out-of-hours route (the locality's rapid response), whose level 1 goes at once.
    assert (await tick(db_url, t + timedelta(minutes=7))).fired == 1
    assert fired(db_url, alert) == [
        (1, ["deal.mn1"]),
        (2, ["deal.matron1"]),
        (1, ["skc-rapid-response.rr1"]),
    ]
    team, reason = one(
        db_url,
        "SELECT data->>'team', data->>'reason' FROM alert_events"
        " WHERE alert_id = %s AND kind = 'escalation_replanned'",
        alert,
    )
    assert (team, reason) == ("skc-rapid-response", "out of hours at the step's due time")


# 7. One alert's bad step does not stop the others.


def _org_with(change: Any) -> str:
    document = load_org_file(EXAMPLE).model_dump(mode="json")
    change(document)
    return yaml.safe_dump(document, sort_keys=False)


def _deal(document: dict[str, Any]) -> dict[str, Any]:
    for locality in document["localities"]:
        for team in locality["teams"]:
            if team["id"] == "deal":
                return team  # type: ignore[no-any-return]
    raise AssertionError("no deal team")


def _name_matron_and_add_lead(document: dict[str, Any]) -> None:
    deal = _deal(document)
    deal["escalation"]["red"]["in_hours"]["levels"][1]["notify"] = ["person:deal.matron1"]
    deal["staff"].append(
        {"id": "deal.lead1", "name": "Lee Testlead (fictional)", "roles": ["team_lead"],
         "email": "deal.lead1@example.invalid"}
    )  # fmt: skip


def _drop_matron(document: dict[str, Any]) -> None:
    _name_matron_and_add_lead(document)
    deal = _deal(document)
    deal["escalation"]["red"]["in_hours"]["levels"][1]["notify"] = ["role:gp"]
    deal["staff"] = [s for s in deal["staff"] if s["id"] != "deal.matron1"]
    deal["rota"] = [r for r in deal["rota"] if r["staff"] != "deal.matron1"]


async def test_a_removed_person_in_a_planned_step_leaves_every_other_alert_escalating(
    db_url: str,
) -> None:
    first = seed(db_url, _org_with(_name_matron_and_add_lead))
    second = seed(db_url, _org_with(_name_matron_and_add_lead), team="dover")
    t = MONDAY_10
    await rules(
        db_url,
        t,
        Decisions(
            hits=[
                (first, hit(SEVERE, Priority.RED, 186, t)),
                (second, hit(SEVERE, Priority.RED, 190, t)),
            ]
        ),
    )
    alert, other = alert_of(db_url, first, SEVERE), alert_of(db_url, second, SEVERE)
    assert (await tick(db_url, t)).fired == 2
    # A third alert's step is broken beyond repair (as a hand-edited row could be).
    broken_patient = seed(db_url, _org_with(_name_matron_and_add_lead))
    await rules(db_url, t, Decisions(hits=[(broken_patient, hit(SEVERE, Priority.RED, 181, t))]))
    broken = alert_of(db_url, broken_patient, SEVERE)
    await tick(db_url, t)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE escalation_steps SET targets = '[42]' WHERE alert_id = %s AND step_no = 2",
            (broken,),
        )
        # The next teams load drops the matron named in the first alert's planned step.
        text = _org_with(_drop_matron)
        escalation_store.load_organisation(conn, load_org_file(text), text)
        conn.commit()
    result = await tick(db_url, t + timedelta(seconds=120))
    assert (result.fired, result.failed) == (2, 1)  # both good alerts escalated
    assert fired(db_url, other)[-1][0] == 2
    assert fired(db_url, alert)[-1] == (2, [])  # nobody by name: the step still went out
    with psycopg.connect(db_url) as conn:
        sent = {
            t
            for (t,) in conn.execute(
                "SELECT target FROM notifications WHERE idempotency_key LIKE %s",
                (f"alert-{alert}-step-2-%",),
            )
        }
        missing = conn.execute(
            "SELECT data->'targets' FROM alert_events WHERE alert_id = %s"
            " AND kind = 'escalation_target_missing'",
            (alert,),
        ).fetchone()
    assert sent == {"deal", "deal-spa@example.invalid"}  # the single point of access
    assert missing == (["person:deal.matron1"],)
    technical = alert_of(db_url, first, TARGET_MISSING)
    priority, message = one(
        db_url, "SELECT priority, message FROM alerts WHERE alert_id = %s", technical
    )
    assert priority == "technical"
    assert "person:deal.matron1" in message
    await tick(db_url, t + timedelta(seconds=121))
    assert fired(db_url, technical) == [(1, ["deal.lead1"])]  # the team lead is told
    # The broken alert was rolled back alone; it is still due and tried again.
    assert [level for level, _ in fired(db_url, broken)] == [1]


# 8. Early end of a snooze from the command line (recorded in the alert's history).


def test_the_command_line_ends_a_snooze_early(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    patient = seed(db_url)
    now = datetime.now(UTC)
    asyncio.run(
        rules(db_url, now, Decisions(hits=[(patient, hit(SEVERE, Priority.RED, 186, now))]))
    )
    alert = alert_of(db_url, patient, SEVERE)
    monkeypatch.setenv("HOMEWARD_DATABASE_URL", db_url)
    runner = CliRunner()
    args = ["alerts", "snooze", str(alert), "--minutes", "30", "--reason", "visit", "--by"]
    assert runner.invoke(cli, [*args, "deal.mn1"]).exit_code == 0
    out = runner.invoke(cli, ["alerts", "unsnooze", str(alert), "--by", "deal.mn1", "--json"])
    assert out.exit_code == 0, out.output
    assert '"unsnoozed"' in out.output
    again = runner.invoke(cli, ["alerts", "unsnooze", str(alert), "--by", "deal.mn1"])
    assert again.exit_code != 0
    assert "not snoozed" in again.output
    with psycopg.connect(db_url) as conn:
        story = conn.execute(
            "SELECT kind, actor FROM alert_events WHERE alert_id = %s AND actor <> 'escalation'"
            " ORDER BY event_id",
            (alert,),
        ).fetchall()
    assert story[-2:] == [("snoozed", "deal.mn1"), ("unsnoozed", "deal.mn1")]


async def test_the_running_service_names_an_alert_it_cannot_escalate_and_escalates_the_rest(
    db_url: str, broker_url: str
) -> None:
    """Through the running service (real clock, its own escalation timer): one alert's
    corrupt step makes /health name the escalation timer; another alert raised by a
    reading over MQTT still escalates."""
    good = seed(db_url)
    bad = seed(db_url)
    now = datetime.now(UTC)
    await rules(db_url, now, Decisions(hits=[(bad, hit(SEVERE, Priority.RED, 181, now))]))
    broken = alert_of(db_url, bad, SEVERE)
    with psycopg.connect(db_url) as conn:  # a hand-made plan whose one step is corrupt
        conn.execute("UPDATE alerts SET policy = '{}'::jsonb WHERE alert_id = %s", (broken,))
        conn.execute(
            "INSERT INTO escalation_steps (alert_id, step_no, level, due_at, targets)"
            " VALUES (%s, 1, 1, %s, '[42]')",
            (broken, now),
        )
        nhs = one(db_url, "SELECT nhs_number FROM patients WHERE patient_id = %s", good)
        add_device(conn, "bp-good", patient_nhs_number=nhs, valid_from=now - timedelta(days=1))
        conn.commit()
    escalated = (
        "SELECT count(*) FROM alert_events e JOIN alerts a USING (alert_id)"
        " WHERE a.patient_id = %s AND e.kind = 'escalated'"
    )
    settings_ = make_settings(db_url, broker_url, escalation_tick_s=0.2)
    publisher = Publisher(broker_url)
    try:
        async with running_service(settings_) as service, aiohttp.ClientSession() as http:
            publisher.publish(
                settings_.readings_topic("bp-good"),
                reading_payload("severe-1", [("systolic_bp", 186, "mm[Hg]")]),
            )
            await async_wait_until(
                lambda: count_rows(db_url, escalated, good) >= 1,
                what="the good alert's first step",
            )
            url = f"http://127.0.0.1:{service.http_port}/health"
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                async with http.get(url) as r:
                    status, body = r.status, await r.json()
                if status == 503:
                    break
                assert asyncio.get_running_loop().time() < deadline, body
                await asyncio.sleep(0.1)
            problems = body["problems"]
            assert any("escalation" in p and "could not be escalated" in p for p in problems)
    finally:
        publisher.close()
        purge_session(settings_)
    assert count_rows(db_url, escalated, bad) == 0  # tried every tick, rolled back alone
