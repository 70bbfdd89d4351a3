"""Escalation driven from the database: plans, acknowledgement timeouts, due steps.

``tick`` is one pass, in one transaction, with ``now`` injected: plan new alerts, expire
acknowledgements that timed out (escalation resumes where it paused), and fire the steps
that are due — each step's ``fired_at`` and its notifications are committed together, so
a step fires exactly once even across a crash. Steps and alert rows are locked
(``FOR UPDATE``): an acknowledgement committed before a step stops it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts.escalation import plan_steps, policy_for, resolve_targets
from alerts.events import INSERT_EVENT, event
from alerts.lifecycle import AlertState, ExpireAcknowledgement, State, decide
from alerts.teams import Organisation, Policy
from homeward.db.queries import load_queries
from homeward.errors import ValidationError

log = logging.getLogger(__name__)
Q = load_queries(Path(__file__).with_name("escalation.sql"))
Cursor = psycopg.AsyncCursor[Any]


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
        conn.execute("DELETE FROM staff")
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
                    "INSERT INTO staff VALUES (%s, %s, %s, %s, %s)",
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


@dataclass
class TickResult:
    planned: int = 0
    expired: int = 0
    fired: int = 0


async def tick(conn: psycopg.AsyncConnection[Any], now: datetime) -> TickResult:
    result = TickResult()
    async with conn.transaction():
        cur = conn.cursor()
        found = await current_organisation(cur)
        if found is None:
            return result  # no organisation loaded: nobody to escalate to (health says so)
        _, org = found
        result.planned = await _plan(cur, org)
        result.expired = await _expire_acknowledgements(cur, now)
        result.fired = await _fire(cur, org, now)
    return result


async def _plan(cur: Cursor, org: Organisation) -> int:
    """Plan up to 500 new alerts; each statement kind goes to the server in one pipelined
    ``executemany`` (an alert storm costs a few round trips, not five per alert)."""
    await cur.execute(Q["unplanned_alerts"])
    policies: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for alert_id, team_id, priority, opened_at in await cur.fetchall():
        if team_id not in org.teams:
            log.error("alert %s: team %s is not in the organisation file", alert_id, team_id)
            continue
        handling_team, policy = policy_for(org, team_id, priority, opened_at)
        snapshot = {"team": handling_team, **policy.model_dump(mode="json")}
        policies.append({"alert_id": alert_id, "policy": Jsonb(snapshot)})
        steps.extend(
            {
                "alert_id": alert_id,
                "step_no": step.step_no,
                "level": step.level,
                "due_at": step.due_at,
                "targets": Jsonb(list(step.notify)),
            }
            for step in plan_steps(policy, opened_at)
        )
        events.append(event(alert_id, "escalation_planned", "escalation", snapshot))
    if policies:
        await cur.executemany(Q["set_policy"], policies)
        if steps:
            await cur.executemany(Q["insert_step"], steps)
        await cur.executemany(INSERT_EVENT, events)
    return len(policies)


async def _expire_acknowledgements(cur: Cursor, now: datetime) -> int:
    await cur.execute(Q["expired_acknowledgements"], {"now": now})
    rows = await cur.fetchall()
    for alert_id, acknowledged_at, expires_at, priority, by in rows:
        state = AlertState(State.ACKNOWLEDGED, priority, by, expires_at)
        decision = decide(state, ExpireAcknowledgement(now))
        await cur.execute(
            "UPDATE alerts SET state = %(state)s, ack_expires_at = NULL,"
            " updated_at = %(now)s WHERE alert_id = %(alert_id)s",
            {**decision.changes, "now": now, "alert_id": alert_id},
        )
        await cur.execute(
            Q["shift_unfired_steps"],
            {"alert_id": alert_id, "now": now, "acknowledged_at": acknowledged_at},
        )
        await _event(cur, alert_id, decision.event, decision.actor, {"acknowledged_by": by})
    return len(rows)


async def _fire(cur: Cursor, org: Organisation, now: datetime) -> int:
    await cur.execute(Q["due_steps"], {"now": now})
    rows = await cur.fetchall()
    for row in rows:
        alert_id, step_no, level, targets, team_id, priority, message, patient_id, policy = row[:9]
        handling = (policy or {}).get("team", team_id)
        people = resolve_targets(org, handling, tuple(targets), now, care_coordinator=row[9])
        await cur.execute(Q["mark_fired"], {"now": now, "alert_id": alert_id, "step_no": step_no})
        payload = {
            "alert_id": alert_id,
            "patient_id": patient_id,
            "team": team_id,
            "priority": priority,
            "message": message,
            "level": level,
            "step": step_no,
            "notified": [p.id for p in people],
            "at": now.isoformat(),
        }
        await _event(cur, alert_id, "escalated", "escalation", payload)
        team = org.teams[handling]
        channels: list[tuple[str, str]] = [("in_app", handling)]
        channels += [("email", p.email) for p in people if p.email]
        channels += [("email", address) for address in team.channels.emails]
        if team.channels.webhook_url:
            channels.append(("webhook", team.channels.webhook_url))
        for channel, target in channels:
            await cur.execute(
                Q["insert_notification"],
                {
                    "alert_id": alert_id,
                    "channel": channel,
                    "target": target,
                    "payload": Jsonb(payload),
                    "key": f"alert-{alert_id}-step-{step_no}-{channel}-{target}",
                    "now": now,
                },
            )
        await cur.execute(
            "SELECT pg_notify('homeward_team_' || %s, %s)",
            (team_id, f'{{"alert_id": {alert_id}, "event": "escalated"}}'),
        )
    return len(rows)


async def _event(cur: Cursor, alert_id: int, kind: str, actor: str, data: dict[str, Any]) -> None:
    await cur.execute(INSERT_EVENT, event(alert_id, kind, actor, data))


def policy_ack_timeout(snapshot: dict[str, Any] | None) -> float | None:
    if not snapshot:
        return None
    return Policy.model_validate({k: v for k, v in snapshot.items() if k != "team"}).ack_timeout_s
