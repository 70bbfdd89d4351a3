"""Missed readings and silent devices, checked on a timer (APScheduler).

Every check recomputes from stored data and ``now`` — the latest deadline of each
schedule, the last reading of that metric, each device's last message and status — so a
restart (even in the middle of a grace period) decides exactly as a process that kept
running. The same missed deadline or silence is recorded once (the upsert only moves an
alert forward in time).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts.careplans import MissedConfig, effective_rules
from alerts.events import INSERT_EVENT, event
from alerts.rules.missed import Schedule, device_silent, missed
from homeward.db.queries import load_queries
from homeward.errors import ValidationError

log = logging.getLogger(__name__)
Q = load_queries(Path(__file__).with_name("adherence.sql"))

# How often each kind of device is expected to report (spot devices daily).
CADENCE_S: Mapping[str, float] = {"wearable": 120.0}
DEFAULT_CADENCE_S = 86_400.0


def schedules_for(conditions: list[str], overrides: Mapping[str, Any]) -> list[Schedule]:
    try:
        rules = effective_rules(conditions, overrides)
    except ValidationError:
        log.exception("stored rules no longer validate; adherence skipped for this patient")
        return []
    out = []
    for item in rules.values():
        rule = item.rule
        if isinstance(rule, MissedConfig) and rule.enabled:
            hour, minute = (int(x) for x in rule.due.split(":"))
            out.append(Schedule(rule.id, rule.metric, time(hour, minute), rule.tz, rule.grace_min))
    return out


async def check(conn: psycopg.AsyncConnection[Any], now: datetime) -> int:
    """One pass over every schedule and device; returns the alerts raised or moved on."""
    changed = 0
    async with conn.transaction():
        cur = conn.cursor()
        await cur.execute(Q["patients_with_rules"])
        schedules = {pid: schedules_for(list(c), o) for pid, c, o in await cur.fetchall()}
        metrics = sorted({s.metric for ss in schedules.values() for s in ss})
        await cur.execute(
            Q["last_readings"], {"since": now - timedelta(days=3), "metrics": metrics}
        )
        last = {(pid, metric): at for pid, metric, at in await cur.fetchall()}
        for pid, patient_schedules in schedules.items():
            for schedule in patient_schedules:
                miss = missed(schedule, last.get((pid, schedule.metric)), now)
                if miss is None:
                    continue
                changed += await _upsert(
                    cur,
                    pid,
                    schedule.rule_id,
                    "missed",
                    schedule.metric,
                    miss.deadline,
                    f"no {schedule.metric} reading by {schedule.due:%H:%M} on {miss.day:%a %d %b}",
                    {"day": miss.day.isoformat()},
                )
        await cur.execute(Q["bound_devices"])
        for device_id, kind, status, last_msg_at, pid in await cur.fetchall():
            silence = device_silent(
                device_id,
                last_seen=last_msg_at,
                status=status,
                expected_cadence_s=CADENCE_S.get(kind, DEFAULT_CADENCE_S),
                now=now,
            )
            if silence is not None:
                seen = silence.last_seen or now
                changed += await _upsert(
                    cur,
                    pid,
                    f"device_silent:{device_id}",
                    "device",
                    None,
                    seen,
                    f"device {device_id}: {silence.reason}",
                    {"device_id": device_id, "status": status},
                )
    return changed


async def _upsert(
    cur: psycopg.AsyncCursor[Any],
    patient_id: int,
    rule_id: str,
    kind: str,
    metric: str | None,
    at: datetime,
    message: str,
    details: dict[str, Any],
) -> int:
    await cur.execute(
        Q["upsert_technical"],
        {
            "patient_id": patient_id,
            "rule_id": rule_id,
            "kind": kind,
            "metric": metric,
            "at": at,
            "message": message,
            "details": Jsonb(details),
        },
    )
    row = await cur.fetchone()
    if row is None:
        return 0  # already recorded for this deadline
    await cur.execute(
        INSERT_EVENT,
        event(row[0], "raised" if row[1] else "updated", "scheduler", {"message": message}),
    )
    return 1
