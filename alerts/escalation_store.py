"""Escalation driven from the database: plans, acknowledgement expiry, snooze ends, due
steps and notifications to the current level — each decided by the pure functions of
alerts/lifecycle.py and alerts/escalation.py on the stored alert.

``tick`` is one pass, in one transaction, with ``now`` injected: plan new alerts (and
plan again those whose priority rose), then look at each alert whose
``escalation_due_at`` has come or that has a notification waiting: expire its
acknowledgement (the current level is told again, escalation resumes where it paused),
end its snooze (escalation resumes where it paused: no burst of the steps that fell due
meanwhile), and fire the steps that are due. Each alert is decided in a savepoint of its
own: one alert's failure rolls back that alert only, and the others keep escalating. A
step's ``fired_at`` and its notifications are committed together, so a step fires exactly
once even across a crash. Alert rows are locked (``FOR UPDATE``): an acknowledgement
committed before a step stops it.

A step naming a person (or a handling team) that a later ``teams load`` removed still
goes out: to the team's single point of access (its channels' e-mail addresses and the
in-app queue), recorded on the alert as ``escalation_target_missing``, with a technical
alert to the team lead (rule ``escalation:target_missing``).

(Over 400 lines on purpose: the organisation's load and the tick's parts — plan, advance
one alert, re-plan, send, fall back — are one unit of I/O around the pure decisions.)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts import alert_store
from alerts.alert import Alert, State
from alerts.commands import AckTimeout, Escalate, RaiseOrUpdate, SnoozeOver
from alerts.escalation import (
    EscalationPlan,
    EscalationStep,
    effective_due_at,
    next_due_step,
    plan_alert,
    plan_steps,
    replan_for,
    resolve_targets,
)
from alerts.events import INSERT_EVENT, event
from alerts.lifecycle import handle
from alerts.rules.types import Priority
from alerts.teams import Level, Organisation, Policy
from homeward.db.queries import load_queries
from homeward.errors import ValidationError

log = logging.getLogger(__name__)
Q = load_queries(Path(__file__).with_name("escalation.sql"))
Cursor = psycopg.AsyncCursor[Any]
TARGET_MISSING = "escalation:target_missing"  # the technical alert's rule id
TEAM_LEAD = Policy(levels=(Level(after_s=0, notify=("role:team_lead",)),))
_MAX_STEPS_PER_TICK = 50  # per alert: overdue steps fire one by one, in order


def load_organisation(conn: psycopg.Connection[Any], org: Organisation, text: str) -> int | None:
    """Store the organisation (idempotent: the same file loads once). Returns the version."""
    sha = hashlib.sha256(text.encode()).hexdigest()
    team_ids = sorted(t.id for locality in org.localities for t in locality.teams)
    with conn.transaction():
        _refuse_orphans(conn, team_ids)
        row = conn.execute(
            Q["org_insert"], {"sha": sha, "document": Jsonb(org.model_dump(mode="json"))}
        )
        inserted = row.fetchone()
        if inserted is None:
            return None
        conn.execute("DELETE FROM rota")
        conn.execute("DELETE FROM escalation_policies")
        # Staff the file no longer names leave, and their API tokens with them (cascade);
        # the others are updated in place, so their tokens and sessions carry on.
        staff_ids = sorted(s.id for team in org.teams.values() for s in team.staff)
        conn.execute("DELETE FROM staff WHERE staff_id <> ALL(%s)", (staff_ids,))
        for locality in org.localities:
            for team in locality.teams:
                conn.execute(
                    "INSERT INTO teams (team_id, name, locality, practices, out_of_hours,"
                    " webhook_url, webhook_secret_env, emails, calendar)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (team_id) DO UPDATE"
                    " SET name = EXCLUDED.name, locality = EXCLUDED.locality,"
                    " practices = EXCLUDED.practices, out_of_hours = EXCLUDED.out_of_hours,"
                    " webhook_url = EXCLUDED.webhook_url,"
                    " webhook_secret_env = EXCLUDED.webhook_secret_env,"
                    " emails = EXCLUDED.emails, calendar = EXCLUDED.calendar",
                    (
                        team.id,
                        team.name,
                        locality.name,
                        list(team.practices),
                        team.out_of_hours,
                        team.channels.webhook_url,
                        team.channels.webhook_secret_env,
                        list(team.channels.emails),
                        Jsonb(org.calendar.model_dump(mode="json")),
                    ),
                )
        # Teams the file no longer has leave (none holds a patient: refused above, and the
        # patients' foreign key would refuse it too): what is in ``teams`` is in force.
        conn.execute("DELETE FROM teams WHERE team_id <> ALL(%s)", (team_ids,))
        for team in org.teams.values():
            for s in team.staff:
                conn.execute(
                    "INSERT INTO staff VALUES (%s, %s, %s, %s, %s) ON CONFLICT (staff_id)"
                    " DO UPDATE SET name = EXCLUDED.name, team_id = EXCLUDED.team_id,"
                    " roles = EXCLUDED.roles, email = EXCLUDED.email",
                    (s.id, s.name, team.id, list(s.roles), s.email),
                )
            for shift in team.rota:
                conn.execute(
                    "INSERT INTO rota VALUES (%s, %s, %s, %s, %s, %s)",
                    (team.id, shift.staff, shift.role, list(shift.days), shift.starts, shift.ends),
                )
            for priority, policies in team.escalation.items():
                for hours, policy in (("in", policies.in_hours), ("out", policies.out_of_hours)):
                    if policy is not None:
                        conn.execute(
                            "INSERT INTO escalation_policies VALUES (%s, %s, %s, %s)",
                            (team.id, priority, hours, Jsonb(policy.model_dump(mode="json"))),
                        )
        return int(inserted[0])


def _refuse_orphans(conn: psycopg.Connection[Any], team_ids: list[str]) -> None:
    """A file that drops a team still holding patients is refused as a whole: those
    patients' alerts would reach no queue and never escalate."""
    rows = conn.execute(
        "SELECT team_id, count(*) FROM patients WHERE team_id <> ALL(%s)"
        " GROUP BY team_id ORDER BY team_id",
        (team_ids,),
    ).fetchall()
    if rows:
        held = "; ".join(f"{team} holds {n} patient(s)" for team, n in rows)
        raise ValidationError(
            f"organisation file refused: it drops teams that still hold patients ({held});"
            " move them first (homeward patient add --nhs-number N --name NAME --team TEAM)"
        )


async def current_organisation(cur: Cursor) -> tuple[int, Organisation] | None:
    await cur.execute(Q["org_latest"])
    row = await cur.fetchone()
    return (int(row[0]), Organisation.model_validate(row[1])) if row else None


class AlertsNotEscalated(RuntimeError):
    """Some alerts could not be decided in a tick (each rolled back alone, logged with
    its id); the others escalated. Raised by the timer so /health names it."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} alert(s) could not be escalated; see the log")


@dataclass
class TickResult:
    planned: int = 0
    expired: int = 0
    fired: int = 0
    renotified: int = 0
    failed: int = 0


async def tick(conn: psycopg.AsyncConnection[Any], now: datetime) -> TickResult:
    result = TickResult()
    async with conn.transaction():
        cur = conn.cursor()
        found = await current_organisation(cur)
        if found is None:
            return result  # no organisation loaded: nobody to escalate to (health says so)
        _, org = found
        result.planned = await _plan(cur, org, now)
        await cur.execute(Q["escalation_candidates"], {"now": now})
        for (alert_id,) in await cur.fetchall():
            try:
                async with conn.transaction():  # a savepoint: this alert's own
                    await _advance(cur, org, int(alert_id), now, result)
            except Exception:  # one alert's failure must not stop the others
                log.exception("escalation of alert %s failed; the others go on", alert_id)
                result.failed += 1
    return result


def _snapshot(plan: EscalationPlan, priority: str) -> dict[str, Any]:
    """What the alert keeps of its plan: the handling team, hours, priority, ladder."""
    return {
        "team": plan.team_id,
        "in_hours": plan.in_hours,
        "priority": priority,
        **plan.policy.model_dump(mode="json"),
    }


def _planned(snapshot: Mapping[str, Any]) -> tuple[str, Policy, bool] | None:
    if "levels" not in snapshot or "team" not in snapshot or "in_hours" not in snapshot:
        return None  # a hand-made plan (tests, older rows): its steps stand as they are
    ladder = {k: v for k, v in snapshot.items() if k in Policy.model_fields}
    return str(snapshot["team"]), Policy.model_validate(ladder), bool(snapshot["in_hours"])


def _step_params(alert_id: int, steps: tuple[EscalationStep, ...]) -> list[dict[str, Any]]:
    return [
        {
            "alert_id": alert_id,
            "step_no": step.step_no,
            "level": step.level,
            "due_at": step.due_at,
            "targets": Jsonb(list(step.targets)),
            "planned_at": step.planned_at,
        }
        for step in steps
    ]


async def _plan(cur: Cursor, org: Organisation, now: datetime) -> int:
    """Plan up to 500 alerts (new, or to plan again after a rise in priority); each
    statement kind goes to the server in one pipelined ``executemany``."""
    await cur.execute(Q["unplanned_alerts"])
    policies: list[dict[str, Any]] = []
    withdrawn: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for alert_id, team_id, priority, plan_from, again, last_step in await cur.fetchall():
        if team_id not in org.teams:
            log.error("alert %s: team %s is not in the organisation file", alert_id, team_id)
            continue
        plan = plan_alert(org, team_id, priority, plan_from, last_step + 1)
        snapshot = _snapshot(plan, priority)
        policies.append({"alert_id": alert_id, "policy": Jsonb(snapshot), "now": now})
        steps.extend(_step_params(alert_id, plan.steps))
        if again:
            withdrawn.append({"alert_id": alert_id, "now": now})
        kind = "escalation_replanned" if again else "escalation_planned"
        data = {**snapshot, "from": plan_from.isoformat()}
        if again:
            data["reason"] = f"priority raised to {priority}"
        events.append(event(alert_id, kind, "escalation", data))
    if policies:
        if withdrawn:
            await cur.executemany(Q["withdraw_steps"], withdrawn)
        await cur.executemany(Q["set_policy"], policies)
        if steps:
            await cur.executemany(Q["insert_step"], steps)
        await cur.executemany(INSERT_EVENT, events)
    return len(policies)


async def _advance(
    cur: Cursor, org: Organisation, alert_id: int, now: datetime, result: TickResult
) -> None:
    """Everything escalation owes one alert at ``now``, decided on the stored alert."""
    found = await alert_store.lock(cur, alert_id)
    if found is None:
        return
    alert, row = found
    if alert.state is State.RESOLVED:
        return
    original = alert
    if alert.ack_expired(now):
        alert, events = handle(alert, AckTimeout(), now)
        await alert_store.record(cur, alert_id, events)
        result.expired += 1
    if alert.snooze_ran_out(now):
        alert, events = handle(alert, SnoozeOver(), now)
        await alert_store.record(cur, alert_id, events)
    steps, fired = await alert_store.steps_of(cur, alert_id)
    snapshot: dict[str, Any] = dict(row["policy"] or {})
    for _ in range(_MAX_STEPS_PER_TICK):
        step = next_due_step(alert, steps, fired, now)
        if step is None:
            break
        due = effective_due_at(alert, step) or now
        planned = _planned(snapshot)
        if planned is not None and row["team_id"] in org.teams:
            await cur.execute(Q["last_step"], {"alert_id": alert_id})
            last = await cur.fetchone()
            plan = replan_for(
                org, row["team_id"], alert.priority, planned, due, int(last[0]) + 1 if last else 1
            )
            if plan is not None:  # in or out of hours at this step's due time
                snapshot = _snapshot(plan, alert.priority)
                await _replan(cur, alert_id, plan, snapshot, due, now)
                steps, fired = await alert_store.steps_of(cur, alert_id)
                continue
        alert, events = handle(alert, Escalate(step.step_no, step.level, step.targets), now)
        await cur.execute(
            Q["mark_fired"], {"now": now, "alert_id": alert_id, "step_no": step.step_no}
        )
        fired.add(step.step_no)
        handling = str(snapshot.get("team", row["team_id"]))
        people = await _send(
            cur,
            org,
            alert,
            row,
            handling,
            step.targets,
            f"step-{step.step_no}",
            now,
            {"level": step.level, "step": step.step_no},
        )
        escalated = events[0].params(alert_id)  # the step's notifications went with it
        escalated["data"] = Jsonb(
            {**escalated["data"].obj, "notified": people, "at": now.isoformat()}
        )
        await cur.execute(INSERT_EVENT, escalated)
        await cur.execute(
            alert_store.Q["notify_team"], {"alert_id": alert_id, "event": "escalated"}
        )
        result.fired += 1
    result.renotified += await _send_requests(cur, org, alert, row, snapshot, now)
    if alert != original:  # a look that decided nothing writes nothing
        await cur.execute(alert_store.Q["save_alert"], alert_store.save_params(alert))
    await alert_store.refresh_escalation_due(cur, alert, now, row["escalation_due_at"])


async def _replan(
    cur: Cursor,
    alert_id: int,
    plan: EscalationPlan,
    snapshot: dict[str, Any],
    due: datetime,
    now: datetime,
) -> None:
    hours = "in hours" if plan.in_hours else "out of hours"
    await cur.execute(Q["withdraw_steps"], {"alert_id": alert_id, "now": now})
    await cur.executemany(Q["insert_step"], _step_params(alert_id, plan.steps))
    await cur.execute(Q["replace_policy"], {"policy": Jsonb(snapshot), "alert_id": alert_id})
    data = {**snapshot, "from": due.isoformat(), "reason": f"{hours} at the step's due time"}
    await cur.execute(INSERT_EVENT, event(alert_id, "escalation_replanned", "escalation", data))


async def _send_requests(
    cur: Cursor,
    org: Organisation,
    alert: Alert,
    row: Mapping[str, Any],
    snapshot: Mapping[str, Any],
    now: datetime,
) -> int:
    """Tell the current level again, as the decision asked (priority raised, a breach
    after "condition cleared", an acknowledgement expired)."""
    await cur.execute(Q["pending_requests"], {"alert_id": alert.id})
    requests = await cur.fetchall()
    handling = str(snapshot.get("team", row["team_id"]))
    for request_id, targets, reason in requests:
        await _send(
            cur,
            org,
            alert,
            row,
            handling,
            tuple(targets),
            f"request-{request_id}",
            now,
            {"level": alert.escalation_level, "step": None, "reason": reason},
        )
        await cur.execute(Q["request_sent"], {"request_id": request_id, "now": now})
    return len(requests)


async def _send(
    cur: Cursor,
    org: Organisation,
    alert: Alert,
    row: Mapping[str, Any],
    handling: str,
    targets: tuple[str, ...],
    key: str,
    now: datetime,
    extra: Mapping[str, Any],
) -> list[str]:
    """Notify ``targets`` on every channel of the handling team; returns who. Targets
    that no longer exist go to the team's single point of access instead (recorded, and
    the team lead is told with a technical alert)."""
    alert_id = int(alert.id)
    team_id = row["team_id"]
    recipients = resolve_targets(org, handling, targets, now, row["care_coordinator"])
    team = org.teams.get(handling) or org.teams.get(team_id)
    payload = {
        "alert_id": alert_id,
        "patient_id": alert.patient_id,
        "team": team_id,
        "priority": str(alert.priority),
        "message": alert.message,
        **extra,
        "notified": [p.id for p in recipients.people],
        "at": now.isoformat(),
    }
    channels: list[tuple[str, str]] = [("in_app", team.id if team else str(team_id))]
    channels += [("email", p.email) for p in recipients.people if p.email]
    if team is not None:
        channels += [("email", address) for address in team.channels.emails]
        if team.channels.webhook_url:
            channels.append(("webhook", team.channels.webhook_url))
    await cur.executemany(
        Q["insert_notification"],
        [
            {
                "alert_id": alert_id,
                "channel": channel,
                "target": target,
                "payload": Jsonb(payload),
                "key": f"alert-{alert_id}-{key}-{channel}-{target}",
                "now": now,
            }
            for channel, target in dict.fromkeys(channels)
        ],
    )
    if recipients.missing:
        await _target_missing(cur, alert, row, recipients.missing, key, team, now)
    return [p.id for p in recipients.people]


async def _target_missing(
    cur: Cursor,
    alert: Alert,
    row: Mapping[str, Any],
    missing: tuple[str, ...],
    key: str,
    team: Any,
    now: datetime,
) -> None:
    alert_id = int(alert.id)
    spa = list(team.channels.emails) if team is not None else []
    data = {
        "targets": list(missing),
        "step": key,
        "sent_to": {"in_app": row["team_id"], "email": spa},
    }
    await cur.execute(
        INSERT_EVENT, event(alert_id, "escalation_target_missing", "escalation", data)
    )
    log.error("alert %s: escalation target(s) %s no longer exist", alert_id, ", ".join(missing))
    if alert.rule_id == TARGET_MISSING:
        return  # the team lead's own alert: recorded, not raised again
    message = (
        f"Alert {alert_id}: escalation names {', '.join(missing)}, no longer in the "
        "organisation file; sent to the team's single point of access instead. "
        "Correct the escalation policy."
    )
    rows = await alert_store.lock_unresolved(cur, [(int(alert.patient_id), TARGET_MISSING)])
    existing = alert_store.from_row(rows[0]) if rows else None
    command = RaiseOrUpdate(
        alert.patient_id, TARGET_MISSING, Priority.TECHNICAL, None, now, message
    )
    technical, events = handle(existing, command, now)
    if existing is not None:
        await cur.execute(alert_store.Q["save_alert"], alert_store.save_params(technical))
        await alert_store.record(cur, int(technical.id), events)
        return
    snapshot = {
        "team": row["team_id"],
        "in_hours": True,
        "priority": "technical",
        **TEAM_LEAD.model_dump(mode="json"),
    }
    await cur.execute(
        alert_store.Q["insert_alert"],
        alert_store.insert_params(
            technical,
            kind="technical",
            metric=None,
            details={"alert_id": alert_id, "targets": list(missing)},
            team_id=row["team_id"],
            policy=snapshot,
        ),
    )
    inserted = await cur.fetchone()
    if inserted is None:
        return
    new_id = int(inserted[0])
    steps = tuple(plan_steps(TEAM_LEAD, now))
    await cur.executemany(Q["insert_step"], _step_params(new_id, steps))
    await alert_store.record(cur, new_id, events)
    await cur.execute(alert_store.Q["set_escalation_due"], {"alert_id": new_id, "due_at": now})
