"""PostgreSQL adapter for the rule engine: loading patient state, writing decisions.

Decisions are written in the same transaction as the readings that caused them, so a
reading is never stored without its rules having been applied (and the alert upsert is
idempotent: at most one unresolved alert per patient and rule, enforced by the index).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import psycopg
from psycopg.types.json import Jsonb

from alerts.engine import (
    HISTORY_S,
    Decisions,
    Freshness,
    Observation,
    PatientSnapshot,
    RuleEngine,
)
from alerts.events import INSERT_EVENT, event
from alerts.feedback import feedback_for
from alerts.quality import RetakeRequest, retake_message
from alerts.rules.types import Cleared, Priority, RuleHit
from homeward.db.queries import load_queries

log = logging.getLogger(__name__)
Q = load_queries(Path(__file__).with_name("store.sql"))
_WARM_CHUNK = 2_000  # patients loaded per round of queries at start-up
Cursor = psycopg.AsyncCursor[Any]


ReadingKey = tuple[str, str, str, datetime]  # device, message id, metric, time


async def refresh_patients(
    cur: Cursor,
    engine: RuleEngine,
    current: dict[int, Freshness],
    now: datetime,
    evaluating: frozenset[ReadingKey] = frozenset(),
) -> None:
    """(Re)load the patients whose in-memory state is not ``current``. Their windows are
    read from the database without the readings about to be evaluated (``evaluating``:
    this batch's, already inserted in this transaction), so none is counted twice."""
    stale = engine.needs(current)
    if not stale:
        return
    await cur.execute(Q["patient_rule_inputs"], {"ids": stale})
    inputs = await cur.fetchall()
    await cur.execute(
        Q["patient_history"], {"ids": stale, "since": now - timedelta(seconds=HISTORY_S)}
    )
    history: dict[int, list[tuple[str, datetime, float, bool | None, str | None]]] = defaultdict(
        list
    )
    for pid, metric, at, value, oxygen, consciousness, device, msg in await cur.fetchall():
        if evaluating and (device, msg, metric, at) in evaluating:
            continue
        history[pid].append((metric, at, value, oxygen, consciousness))
    await cur.execute(Q["breached_rules"], {"ids": stale})
    breached: dict[int, set[str]] = defaultdict(set)
    for pid, rule_id in await cur.fetchall():
        breached[pid].add(rule_id)
    for pid, _team, conditions, version, overrides in inputs:
        engine.load(
            PatientSnapshot(
                pid,
                version,
                tuple(conditions),
                overrides,
                history[pid],
                frozenset(breached[pid]),
                current[pid].seq,
            )
        )


async def _freshness(cur: Cursor, query: str, ids: list[int]) -> dict[int, Freshness]:
    await cur.execute(Q[query], {"ids": ids})
    return {
        int(row[0]): Freshness(int(row[1]), int(row[2]), tuple(row[3]))
        for row in await cur.fetchall()
    }


async def _lock(cur: Cursor, ids: list[int]) -> tuple[dict[int, Freshness], set[int]]:
    """Lock and bump the patients' rule state: what each window must be built from, and
    the patients with readings kept for re-evaluation."""
    await cur.execute(Q["lock_rule_state"], {"ids": ids})
    current, backlog = {}, set()
    for pid, seq, version, conditions, waiting in await cur.fetchall():
        current[int(pid)] = Freshness(int(seq), int(version), tuple(conditions))
        if waiting:
            backlog.add(int(pid))
    if len(current) < len(ids):  # every patient has a row (a trigger on patients makes it)
        missing = sorted(set(ids) - set(current))
        raise LookupError(f"no rule state for patients {missing}: their readings are kept")
    return current, backlog


def _upsert_params(m: MergedHit) -> dict[str, Any]:
    hit = m.latest
    return {
        "patient_id": m.patient_id,
        "rule_id": hit.rule_id,
        "kind": hit.kind,
        "metric": hit.metric,
        "priority": hit.priority.value,
        "first_at": m.first.measured_at,
        "latest_at": hit.measured_at,
        "first_value": m.first.value,
        "latest_value": hit.value,
        "worst_value": m.worst_value,
        "count": m.count,
        "message": hit.message,
        "details": Jsonb(hit.details),
        "direction": hit.direction,
    }


@dataclass(frozen=True, slots=True)
class MergedHit:
    """All hits of one batch for one (patient, rule): one upsert, one event."""

    patient_id: int
    first: RuleHit
    latest: RuleHit
    worst_value: float | None
    count: int


def merge_hits(hits: Iterable[tuple[int, RuleHit]]) -> list[MergedHit]:
    groups: dict[tuple[int, str], list[RuleHit]] = {}
    for patient_id, hit in hits:
        groups.setdefault((patient_id, hit.rule_id), []).append(hit)
    merged = []
    for (patient_id, _), group in groups.items():
        latest = max(group, key=lambda h: h.measured_at)
        values = [h.value for h in group if h.value is not None]
        worst = latest.value
        if values and latest.direction == "high":
            worst = max(values)
        elif values and latest.direction == "low":
            worst = min(values)
        priority_first = max(group, key=lambda h: h.priority == Priority.RED)
        merged.append(
            MergedHit(
                patient_id,
                group[0],
                replace(latest, priority=priority_first.priority),
                worst,
                len(group),
            )
        )
    return merged


async def write_decisions(cur: Cursor, decisions: Decisions) -> int:
    """Upsert alerts, mark cleared conditions, record late items for review.

    Statements of a kind go to the server together (``executemany``, pipelined by
    psycopg): a batch that touches hundreds of alerts costs a few round trips, not
    hundreds."""
    merged = merge_hits(decisions.hits)
    if merged:
        await cur.executemany(
            Q["upsert_alert"], [_upsert_params(m) for m in merged], returning=True
        )
        rows = []
        while True:
            rows.append(await cur.fetchone())
            if not cur.nextset():
                break
        events, feedback = [], []
        for m, row in zip(merged, rows, strict=True):
            assert row is not None
            alert_id, created, priority = row
            hit = m.latest
            message = feedback_for(hit) if created else None
            if message is not None and hit.device_id is not None:
                # one message per new alert, to the device that took the reading
                feedback.append(
                    {
                        "alert_id": alert_id,
                        "patient_id": m.patient_id,
                        "device_id": hit.device_id,
                        "payload": Jsonb({"message": message, "alert_id": alert_id}),
                    }
                )
            events.append(
                event(
                    alert_id,
                    "raised" if created else "updated",
                    "rules",
                    {
                        "value": hit.value,
                        "measured_at": hit.measured_at.isoformat(),
                        "message": hit.message,
                        "priority": priority,
                        "hits": m.count,
                    },
                )
            )
        await cur.executemany(INSERT_EVENT, events)
        await cur.execute(
            Q["notify_teams"],
            {
                "alert_ids": [e["alert_id"] for e in events],
                "events": [e["kind"] for e in events],
                "measured_at": [m.first.measured_at for m in merged],
            },
        )
        if feedback:
            await cur.executemany(Q["queue_feedback"], feedback)
    if decisions.retakes:
        await cur.executemany(Q["queue_retake"], retake_feedback(decisions.retakes))
    for patient_id, cleared in decisions.clears:
        await cur.execute(Q["clear_alert"], {"patient_id": patient_id, "rule_id": cleared.rule_id})
        for (alert_id,) in await cur.fetchall():
            data = {"value": cleared.value, "measured_at": cleared.measured_at.isoformat()}
            await cur.execute(INSERT_EVENT, event(alert_id, "condition_cleared", "rules", data))
    for patient_id, hit in decisions.reviews:
        await cur.execute(
            Q["insert_review"],
            {
                "patient_id": patient_id,
                "rule_id": hit.rule_id,
                "at": hit.measured_at,
                "value": hit.value,
                "message": f"late data: {hit.message}",
            },
        )
    return len(decisions.hits)


class StoredObservation(Observation, Protocol):
    """A stored reading: an observation with the key that names its row."""

    @property
    def device_id(self) -> str: ...
    @property
    def msg_id(self) -> str: ...


def retake_feedback(requests: Iterable[RetakeRequest]) -> list[dict[str, Any]]:
    """One retake request per device and measurement (a blood pressure's systolic and
    diastolic are one message), naming every questioned metric and flag."""
    grouped: dict[tuple[int, str, datetime], list[RetakeRequest]] = {}
    for r in requests:
        grouped.setdefault((r.patient_id, r.device_id, r.measured_at), []).append(r)
    out = []
    for (patient_id, device_id, measured_at), group in grouped.items():
        flags = sorted({f for r in group for f in r.flags})
        payload = {
            "kind": "retake",
            "message": retake_message(flags),
            "metrics": sorted({r.metric for r in group}),
            "flags": flags,
            "measured_at": measured_at.isoformat(),
        }
        out.append(
            {
                "patient_id": patient_id,
                "device_id": device_id,
                "key": f"retake-{device_id}-{measured_at.isoformat()}",
                "payload": Jsonb(payload),
            }
        )
    return out


RULE_FAILURE = "rules:not_evaluated"  # the technical alert of a patient whose rules failed


class BacklogReading(NamedTuple):
    """A stored reading kept for re-evaluation (the columns of ``backlog_readings``)."""

    time: datetime
    patient_id: int
    device_id: str
    metric: str
    value: float
    received_at: datetime
    msg_id: str
    on_oxygen: bool | None
    consciousness: str | None
    late: bool
    flags: list[str] | None


class RuleStage:
    """Runs inside the ingest transaction, after the readings are inserted."""

    def __init__(self, engine: RuleEngine | None = None, *, late_after_s: float = 6 * 3600) -> None:
        self.engine = engine or RuleEngine()
        self.alerts_written = 0
        self.late_after = timedelta(seconds=late_after_s)
        self.failures = 0  # patients' evaluations that raised (each kept and alerted)
        self.last_failure: str | None = None

    async def __call__(
        self, cur: Cursor, stored: Sequence[StoredObservation], now: datetime
    ) -> None:
        """Lock the batch's patients' rule state, reload any window another worker moved
        on (or whose rules changed), evaluate, write the decisions — all in the batch's
        transaction, so the next worker to lock a patient sees them with its readings.

        Readings kept from an earlier failure are evaluated again with their patient's
        batch (the window reloaded without them); a patient whose rules raise now has its
        readings kept and a technical alert, and every other patient is decided as usual."""
        current, waiting = await _lock(cur, sorted({r.patient_id for r in stored}))
        readings: list[StoredObservation] = list(stored)
        if waiting:
            await cur.execute(
                Q["backlog_readings"],
                {"ids": sorted(waiting), "stale_before": now - self.late_after},
            )
            readings += [BacklogReading(*row) for row in await cur.fetchall()]
            self.engine.forget(waiting)
        keys = frozenset((r.device_id, r.msg_id, r.metric, r.time) for r in readings)
        await refresh_patients(cur, self.engine, current, now, keys)
        decisions = self.engine.evaluate(readings)
        self.engine.advance({pid: fresh.seq + 1 for pid, fresh in current.items()})
        recovered = sorted(waiting - decisions.failed.keys())
        decisions.clears.extend((pid, Cleared(RULE_FAILURE, now, None)) for pid in recovered)
        self.alerts_written += await write_decisions(cur, decisions)
        if recovered:
            await cur.execute(Q["reevaluated"], {"ids": recovered})
        if decisions.failed:
            failed = [r for r in readings if r.patient_id in decisions.failed]
            await self.keep(cur, failed, decisions.failed)

    async def keep(
        self, cur: Cursor, readings: Sequence[StoredObservation], errors: dict[int, str]
    ) -> None:
        """Rules failed for these readings: keep them for re-evaluation, make every worker
        reload the patients, and raise a technical alert for each patient (its team sees
        it, escalation handles it like any technical alert)."""
        ids = sorted(errors)
        self.failures += len(ids)
        self.last_failure = next(iter(errors.values()))
        log.error("rules failed for %d patients (readings kept): %s", len(ids), errors)
        await cur.execute(Q["bump_rule_state"], {"ids": ids})
        await cur.execute(
            Q["keep_for_reevaluation"],
            {
                "device_ids": [r.device_id for r in readings],
                "msg_ids": [r.msg_id for r in readings],
                "metrics": [r.metric for r in readings],
                "times": [r.time for r in readings],
                "patient_ids": [r.patient_id for r in readings],
                "errors": [errors[r.patient_id] for r in readings],
            },
        )
        by_patient: dict[int, list[StoredObservation]] = defaultdict(list)
        for r in readings:
            by_patient[r.patient_id].append(r)
        hits = Decisions()
        for pid in ids:
            kept = by_patient[pid]
            hits.hits.append(
                (
                    pid,
                    RuleHit(
                        rule_id=RULE_FAILURE,
                        kind="technical",
                        metric=None,
                        priority=Priority.TECHNICAL,
                        value=None,
                        measured_at=max(r.time for r in kept),
                        message=(
                            f"Rules could not be evaluated for {len(kept)} readings"
                            " (kept: evaluated again with the patient's next reading) — "
                            f"{errors[pid]}"
                        ),
                        details={"error": errors[pid], "readings": len(kept)},
                    ),
                )
            )
        await write_decisions(cur, hits)

    async def warm(self, conn: psycopg.AsyncConnection[Any], now: datetime) -> int:
        """Load every patient who has a device bound now, in chunks, before readings flow:
        after a restart the first reading of each patient then costs no database load
        inside its batch. Returns how many patients were loaded."""
        async with conn.cursor() as cur:
            await cur.execute(Q["bound_patients"])
            ids = [int(pid) for (pid,) in await cur.fetchall()]
            for start in range(0, len(ids), _WARM_CHUNK):
                chunk = ids[start : start + _WARM_CHUNK]
                current = await _freshness(cur, "rule_versions", chunk)
                await refresh_patients(cur, self.engine, current, now)
        return len(ids)

    def rolled_back(self, stored: list[Any]) -> None:
        """The transaction failed: forget what the evaluation changed; reload next time."""
        self.engine.forget({r.patient_id for r in stored})
