"""Missed readings and silent devices, checked on a timer (APScheduler).

Every check recomputes from stored data and ``now`` — the latest deadline of each
schedule, the last reading of that metric, each device's last message and status — so a
restart (even in the middle of a grace period) decides exactly as a process that kept
running. The same missed deadline or silence is recorded once (the upsert only moves an
alert forward in time).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts import data_gaps
from alerts.careplans import (
    QUALITY_DEFAULT,
    DeviceSilenceConfig,
    MissedConfig,
    QualityConfig,
    effective_rules,
)
from alerts.events import INSERT_EVENT, event
from alerts.quality import questioning
from alerts.rules.missed import Schedule, device_silent, missed
from homeward.db.queries import load_queries
from homeward.errors import ValidationError

log = logging.getLogger(__name__)
Q = load_queries(Path(__file__).with_name("adherence.sql"))

# Device kinds that stream (wearables); every other kind is a spot device (cuffs, scales,
# meters). Their expected cadence is the patient's ``device_silence`` setting.
CONTINUOUS_KINDS = frozenset({"wearable"})


def _effective(conditions: list[str], overrides: Mapping[str, Any]) -> list[Any]:
    try:
        rules = effective_rules(conditions, overrides)
    except ValidationError:
        log.exception("stored rules no longer validate; adherence skipped for this patient")
        return []
    return [item.rule for item in rules.values() if item.rule.enabled]


def schedules_for(conditions: list[str], overrides: Mapping[str, Any]) -> list[Schedule]:
    return [r.to_rule() for r in _effective(conditions, overrides) if isinstance(r, MissedConfig)]


def silences_for(conditions: list[str], overrides: Mapping[str, Any]) -> DeviceSilenceConfig | None:
    """The patient's enabled ``device_silence`` rule, or ``None`` (no silence alerts)."""
    found = [r for r in _effective(conditions, overrides) if isinstance(r, DeviceSilenceConfig)]
    return found[0] if found else None


def retake_within_for(conditions: list[str], overrides: Mapping[str, Any]) -> float:
    """Minutes a questionable reading waits for a good retake (the ``quality`` rule)."""
    found = [r for r in _effective(conditions, overrides) if isinstance(r, QualityConfig)]
    return found[0].retake_within_min if found else QUALITY_DEFAULT.retake_within_min


@dataclass(frozen=True, slots=True)
class Plan:
    """What the adherence pass checks for one patient."""

    schedules: tuple[Schedule, ...]
    silence: DeviceSilenceConfig | None
    retake_within_min: float = QUALITY_DEFAULT.retake_within_min


@functools.lru_cache(maxsize=1024)
def _plan(conditions: tuple[str, ...], overrides_json: str) -> Plan:
    """Patients share a handful of (conditions, overrides): resolve each once, not once
    per patient per pass (10,000 patients took 1.5 s of the event loop a minute)."""
    overrides = json.loads(overrides_json)
    return Plan(
        tuple(schedules_for(list(conditions), overrides)),
        silences_for(list(conditions), overrides),
        retake_within_for(list(conditions), overrides),
    )


def expected_cadence_s(kind: str | None, config: DeviceSilenceConfig) -> float:
    if kind in CONTINUOUS_KINDS:
        return config.continuous_cadence_min * 60.0
    return config.spot_cadence_h * 3600.0


_NEVER = datetime.min.replace(tzinfo=UTC)
RESOLVED_KEPT = timedelta(days=35)  # how far back a resolved alert still counts as recorded
CHUNK = 1_000  # rows handled between turns of the event loop
RETAKES_KEPT = timedelta(days=3)  # how far back a questionable reading still waits


@dataclass(frozen=True, slots=True)
class Candidate:
    """A technical alert to raise, or to move on to a later deadline or silence."""

    patient_id: int
    rule_id: str
    kind: str
    metric: str | None
    at: datetime
    message: str
    details: dict[str, Any]


def missed_candidates(
    schedules: Mapping[int, Sequence[Schedule]],
    last: Mapping[tuple[int, str], datetime],
    now: datetime,
) -> list[Candidate]:
    out = []
    for pid, patient_schedules in schedules.items():
        for schedule in patient_schedules:
            miss = missed(schedule, last.get((pid, schedule.metric)), now)
            if miss is not None:
                out.append(
                    Candidate(
                        pid,
                        schedule.rule_id,
                        "missed",
                        schedule.metric,
                        miss.deadline,
                        f"no {schedule.metric} reading by {schedule.due:%H:%M}"
                        f" on {miss.day:%a %d %b}",
                        {"day": miss.day.isoformat()},
                    )
                )
    return out


def silence_candidates(
    devices: Iterable[tuple[str, str | None, str | None, datetime | None, int]],
    now: datetime,
    settings: Mapping[int, DeviceSilenceConfig | None],
) -> list[Candidate]:
    """Silent or offline devices, judged by each patient's own ``device_silence`` rule: a
    patient without one (disabled) gets no silence alerts; ``offline_alerts=false`` ignores
    a device's own "offline" (its silence is still counted from its last message)."""
    out = []
    for device_id, kind, status, last_msg_at, pid in devices:
        config = settings.get(pid)
        if config is None:
            continue
        silence = device_silent(
            device_id,
            last_seen=last_msg_at,
            status=status if config.offline_alerts else None,
            expected_cadence_s=expected_cadence_s(kind, config),
            now=now,
            factor=config.factor,
        )
        if silence is not None:
            out.append(
                Candidate(
                    pid,
                    f"device_silent:{device_id}",
                    "device",
                    None,
                    silence.last_seen or now,
                    f"device {device_id}: {silence.reason}",
                    {"device_id": device_id, "status": status},
                )
            )
    return out


def retake_candidates(
    pending: Iterable[tuple[int, str, datetime, str, Sequence[str]]],
    now: datetime,
    within_min: Mapping[int, float],
) -> list[Candidate]:
    """A technical alert for each patient and metric whose newest reading is questionable
    and has waited longer than the patient's ``retake_within_min`` for a good retake."""
    out = []
    for pid, metric, at, device_id, flags in pending:
        within = within_min.get(pid, QUALITY_DEFAULT.retake_within_min)
        if now < at + timedelta(minutes=within):
            continue
        questioned = list(questioning(metric, flags))
        out.append(
            Candidate(
                pid,
                f"retake:{metric}",
                "quality",
                metric,
                at,
                f"no good {metric} reading within {within:g} min of a questionable one "
                f"from device {device_id} ({', '.join(questioned)}): check the device and "
                "the patient's technique",
                {"device_id": device_id, "flags": questioned, "retake_within_min": within},
            )
        )
    return out


async def _in_turns(cur: psycopg.AsyncCursor[Any]) -> AsyncIterator[list[Any]]:
    """A result's rows, CHUNK at a time, with a turn of the event loop between: reading
    10,000 patients' rows in one go held ingest for a few hundred milliseconds."""
    while rows := await cur.fetchmany(CHUNK):
        yield rows
        await asyncio.sleep(0)


async def check(conn: psycopg.AsyncConnection[Any], now: datetime) -> int:
    """One pass over every schedule and device; returns the alerts raised or moved on.
    It shares the event loop with ingest, so its work is done CHUNK rows at a time."""
    async with conn.transaction():
        cur = conn.cursor()
        await cur.execute(Q["patients_with_rules"])
        schedules: dict[int, tuple[Schedule, ...]] = {}
        silences: dict[int, DeviceSilenceConfig | None] = {}
        retake_within: dict[int, float] = {}
        async for rows in _in_turns(cur):
            for pid, conditions, overrides in rows:
                plan = _plan(tuple(sorted(conditions)), overrides)
                schedules[pid], silences[pid] = plan.schedules, plan.silence
                retake_within[pid] = plan.retake_within_min
        metrics = sorted({s.metric for ss in schedules.values() for s in ss})
        await cur.execute(
            Q["last_readings"], {"since": now - timedelta(days=3), "metrics": metrics}
        )
        last: dict[tuple[int, str], datetime] = {}
        async for rows in _in_turns(cur):
            last.update(((pid, metric), at) for pid, metric, at in rows)
        candidates: list[Candidate] = []
        patients = list(schedules.items())
        for i in range(0, len(patients), CHUNK):
            candidates += missed_candidates(dict(patients[i : i + CHUNK]), last, now)
            await asyncio.sleep(0)
        await cur.execute(Q["bound_devices"])
        async for rows in _in_turns(cur):
            candidates += silence_candidates(rows, now, silences)
        await cur.execute(Q["pending_retakes"], {"since": now - RETAKES_KEPT})
        async for rows in _in_turns(cur):
            candidates += retake_candidates(rows, now, retake_within)
        # Most candidates of a pass are already recorded: send only what moves an alert on
        # (the upsert still decides, so a concurrent worker cannot make it record twice).
        await cur.execute(Q["recorded_technical"], {"since": now - RESOLVED_KEPT})
        recorded: dict[tuple[int, str], datetime] = {}
        async for rows in _in_turns(cur):
            recorded.update(((pid, rule), at) for pid, rule, at in rows)
        candidates = [
            c for c in candidates if recorded.get((c.patient_id, c.rule_id), _NEVER) < c.at
        ]
        changed = 0
        for i in range(0, len(candidates), CHUNK):
            changed += await _record(cur, candidates[i : i + CHUNK])
        changed += await data_gaps.check(cur, now)  # holes in the devices' sequence numbers
    return changed


async def _record(cur: psycopg.AsyncCursor[Any], candidates: list[Candidate]) -> int:
    """Raise or move on these alerts in one statement, and append their events."""
    await cur.execute(
        Q["upsert_technical"],
        {
            "patient_id": [c.patient_id for c in candidates],
            "rule_id": [c.rule_id for c in candidates],
            "kind": [c.kind for c in candidates],
            "metric": [c.metric for c in candidates],
            "at": [c.at for c in candidates],
            "message": [c.message for c in candidates],
            "details": [Jsonb(c.details) for c in candidates],
        },
    )
    changed = await cur.fetchall()
    if changed:
        await cur.executemany(
            INSERT_EVENT,
            [
                event(alert_id, "raised" if created else "updated", "scheduler", {"message": m})
                for alert_id, created, m in changed
            ],
        )
    return len(changed)
