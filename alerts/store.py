"""PostgreSQL adapter for the rule engine: loading patient state, writing decisions.

Decisions are written in the same transaction as the readings that caused them, so a
reading is never stored without its rules having been applied. Each (patient, rule)'s
hits and clearances of a batch are applied to its stored alert in measurement order by
the one pure decision (alerts/lifecycle.py ``handle``), so the alert's state does not
depend on where batches split. At most one unresolved alert per patient and rule is
enforced by the index: a worker that loses the race to raise an alert decides again on
the row the other worker stored.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Protocol, cast

import psycopg
from psycopg.types.json import Jsonb

from alerts import alert_store
from alerts.alert import Alert, Direction
from alerts.commands import ConditionCleared, RaiseOrUpdate
from alerts.engine import (
    HISTORY_S,
    Decisions,
    Freshness,
    Observation,
    PatientSnapshot,
    RuleEngine,
)
from alerts.events import INSERT_EVENT, AlertRaised, AlertUpdated, Event, NotificationRequested
from alerts.feedback import feedback_for
from alerts.lifecycle import handle
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


@dataclass(frozen=True, slots=True)
class _Item:
    """One decision of the rule engine for one (patient, rule): a hit or a clearance."""

    at: datetime
    hit: RuleHit | None = None
    cleared: Cleared | None = None


def in_measurement_order(decisions: Decisions) -> dict[tuple[int, str], list[_Item]]:
    """Each (patient, rule)'s hits and clearances of the batch in the order they were
    measured: a recovery followed by a new breach leaves the alert breached, a breach
    followed by a recovery leaves it "condition cleared", whatever the batching."""
    groups: dict[tuple[int, str], list[_Item]] = {}
    for patient_id, hit in decisions.hits:
        groups.setdefault((patient_id, hit.rule_id), []).append(_Item(hit.measured_at, hit=hit))
    for patient_id, cleared in decisions.clears:
        key = (patient_id, cleared.rule_id)
        groups.setdefault(key, []).append(_Item(cleared.measured_at, cleared=cleared))
    for items in groups.values():
        items.sort(key=lambda item: (item.at, item.hit is None))
    return groups


@dataclass
class _Decided:
    """The pure decision's result for one (patient, rule) in this batch."""

    before: Alert | None
    alert: Alert
    events: list[Event]
    newest: RuleHit | None  # the newest hit (its kind, metric and details are kept)


def decide_in_order(
    key: tuple[int, str], items: Sequence[_Item], alert: Alert | None, now: datetime
) -> _Decided | None:
    """Run alerts/lifecycle.py ``handle`` on each item in measurement order."""
    before, events = alert, []
    newest: RuleHit | None = None
    for item in items:
        if item.hit is not None:
            hit = item.hit
            direction = hit.direction if hit.direction in ("high", "low") else None
            command = RaiseOrUpdate(
                key[0],
                key[1],
                hit.priority,
                hit.value,
                hit.measured_at,
                hit.message,
                cast(Direction | None, direction),
            )
            alert, done = handle(alert, command, now)
            if newest is None or hit.measured_at >= newest.measured_at:
                newest = hit
        elif alert is not None and item.cleared is not None:
            cleared = item.cleared
            alert, done = handle(alert, ConditionCleared(cleared.value, cleared.measured_at), now)
        else:
            continue  # a clearance with no alert to mark
        events += done
    if alert is None:
        return None
    return _Decided(before, alert, _merge_updates(events), newest)


def _merge_updates(events: list[Event]) -> list[Event]:
    """A batch's consecutive hits of one alert are stored as one event (``hits``): the
    raise with the updates after it, or a run of updates; a rise in priority stays an
    update of its own."""
    out: list[Event] = []
    for e in events:
        last = out[-1] if out else None
        if isinstance(e, AlertUpdated) and isinstance(last, AlertUpdated):
            out[-1] = replace(
                e,
                hits=last.hits + e.hits,
                previous_priority=last.previous_priority or e.previous_priority,
            )
        elif (
            isinstance(e, AlertUpdated)
            and isinstance(last, AlertRaised)
            and e.previous_priority is None
        ):
            out[-1] = replace(last, hits=last.hits + e.hits)
        else:
            out.append(e)
    return out


def _rose(events: Iterable[Event]) -> bool:
    return any(isinstance(e, AlertUpdated) and e.previous_priority for e in events)


async def write_decisions(cur: Cursor, decisions: Decisions, now: datetime) -> int:
    """Decide each (patient, rule) of the batch on its stored alert, in measurement order,
    with the one pure decision; write the alerts, their events and the notifications they
    ask for; record late items for review.

    Statements of a kind go to the server together (``executemany``, pipelined by
    psycopg): a batch that touches hundreds of alerts costs a few round trips."""
    groups = in_measurement_order(decisions)
    if groups:
        rows = await alert_store.lock_unresolved(cur, sorted(groups))
        stored = {(int(r["patient_id"]), r["rule_id"]): alert_store.from_row(r) for r in rows}
        decided = {
            key: d
            for key, items in groups.items()
            if (d := decide_in_order(key, items, stored.get(key), now)) is not None
        }
        ids = await _write(cur, decided, now)
        lost = [key for key, d in decided.items() if d.before is None and key not in ids]
        if lost:  # another worker raised the same alert first: decide again on its row
            rows = await alert_store.lock_unresolved(cur, lost)
            again = {(int(r["patient_id"]), r["rule_id"]): alert_store.from_row(r) for r in rows}
            retried = {
                key: d
                for key in lost
                if (d := decide_in_order(key, groups[key], again.get(key), now)) is not None
            }
            ids.update(await _write(cur, retried, now))
            decided.update(retried)
        await _announce(cur, groups, decided, ids)
    if decisions.retakes:
        await cur.executemany(Q["queue_retake"], retake_feedback(decisions.retakes))
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


async def _write(
    cur: Cursor, decided: dict[tuple[int, str], _Decided], now: datetime
) -> dict[tuple[int, str], int]:
    """Insert the new alerts, save the others; returns the stored id of each key written."""
    ids: dict[tuple[int, str], int] = {}
    new = [(key, d) for key, d in decided.items() if d.before is None]
    if new:
        await cur.executemany(
            alert_store.Q["insert_alert"],
            [
                alert_store.insert_params(
                    d.alert,
                    kind=d.newest.kind if d.newest else "threshold",
                    metric=d.newest.metric if d.newest else None,
                    details=d.newest.details if d.newest else {},
                )
                for _, d in new
            ],
            returning=True,
        )
        for key, _ in new:
            row = await cur.fetchone()
            if row is not None:
                ids[key] = int(row[0])
            cur.nextset()
    old = [(key, d) for key, d in decided.items() if d.before is not None]
    if old:
        await cur.executemany(
            alert_store.Q["save_alert"],
            [
                alert_store.save_params(
                    d.alert,
                    details=d.newest.details
                    if d.newest and d.alert.latest_measured_at == d.newest.measured_at
                    else None,
                    plan_from=now if _rose(d.events) else None,
                )
                for _, d in old
            ],
        )
        ids.update((key, int(d.alert.id)) for key, d in old)
    return ids


async def _announce(
    cur: Cursor,
    groups: dict[tuple[int, str], list[_Item]],
    decided: dict[tuple[int, str], _Decided],
    ids: dict[tuple[int, str], int],
) -> None:
    """The events, the notifications asked for, the team's live stream, patient feedback."""
    written = [(key, d, ids[key]) for key, d in decided.items() if key in ids and d.events]
    if not written:
        return
    await cur.executemany(
        INSERT_EVENT, [e.params(alert_id) for _, d, alert_id in written for e in d.events]
    )
    requests = [
        {"alert_id": alert_id, "at": e.at, "targets": Jsonb(list(e.targets)), "reason": e.reason}
        for _, d, alert_id in written
        for e in d.events
        if isinstance(e, NotificationRequested) and e.targets
    ]
    if requests:
        await cur.executemany(alert_store.Q["request_notification"], requests)
    await cur.execute(
        Q["notify_teams"],
        {
            "alert_ids": [alert_id for _, _, alert_id in written],
            "events": [d.events[0].kind for _, d, _ in written],
            "measured_at": [groups[key][0].at for key, _, _ in written],
        },
    )
    feedback = []
    for key, d, alert_id in written:
        hit = d.newest
        message = feedback_for(hit) if d.before is None and hit is not None else None
        if message is not None and hit is not None and hit.device_id is not None:
            # one message per new alert, to the device that took the reading
            feedback.append(
                {
                    "alert_id": alert_id,
                    "patient_id": key[0],
                    "device_id": hit.device_id,
                    "payload": Jsonb({"message": message, "alert_id": alert_id}),
                }
            )
    if feedback:
        await cur.executemany(Q["queue_feedback"], feedback)


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
        self.alerts_written += await write_decisions(cur, decisions, now)
        if recovered:
            await cur.execute(Q["reevaluated"], {"ids": recovered})
        if decisions.failed:
            failed = [r for r in readings if r.patient_id in decisions.failed]
            await self.keep(cur, failed, decisions.failed, now)

    async def keep(
        self,
        cur: Cursor,
        readings: Sequence[StoredObservation],
        errors: dict[int, str],
        now: datetime | None = None,
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
        await write_decisions(cur, hits, now or datetime.now(UTC))

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
