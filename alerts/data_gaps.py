"""Data-gap technical alerts from device sequence numbers (``device_seq``).

Ingest keeps, per device, the sequence numbers below the highest one that never arrived
(``device_sequences.missing``, ingest/writer.sql). A hole still open ``GAP_GRACE_S`` after
it appeared — longer than a reclaimed worker's share can be late (docs/operations.md) —
means messages were lost on the way (a broker queue overflow or restart, a device that
skipped) or quarantined: a technical alert for the patient's team, once per hole.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts.events import INSERT_EVENT, event
from homeward.db.queries import load_queries

Q = load_queries(Path(__file__).with_name("data_gaps.sql"))
UPSERT = load_queries(Path(__file__).with_name("adherence.sql"))["upsert_technical"]
GAP_GRACE_S = 300.0
RULE_PREFIX = "data_gap:"


def _count(holes: Any) -> int:
    return sum(int(r.upper) - int(r.lower) for r in holes)


def _describe(holes: Any) -> str:
    parts = [f"{r.lower}" if r.upper - r.lower == 1 else f"{r.lower}–{r.upper - 1}" for r in holes]
    return ", ".join(parts[:10]) + (f" and {len(parts) - 10} more" if len(parts) > 10 else "")


async def check(cur: psycopg.AsyncCursor[Any], now: datetime) -> int:
    """Raise (or move on) one technical alert per device with a hole older than the
    grace period; returns how many alerts were raised or moved on."""
    await cur.execute(Q["open_gaps"], {"before": now - timedelta(seconds=GAP_GRACE_S)})
    rows = await cur.fetchall()
    changed = 0
    for device_id, patient_id, _text, holes, since in rows:
        count = _count(holes)
        message = (
            f"device {device_id}: {count} message{'s' if count != 1 else ''} never received "
            f"(sequence numbers {_describe(holes)}) — lost on the way or quarantined; "
            "readings may be missing"
        )
        details = {"device_id": device_id, "missing": str(holes), "since": since.isoformat()}
        await cur.execute(
            UPSERT,
            {
                "patient_id": [patient_id],
                "rule_id": [f"{RULE_PREFIX}{device_id}"],
                "kind": ["data_gap"],
                "metric": [None],
                "at": [now],
                "message": [message],
                "details": [Jsonb(details)],
            },
        )
        for alert_id, created, text in await cur.fetchall():
            await cur.execute(
                INSERT_EVENT,
                event(alert_id, "raised" if created else "updated", "scheduler", {"message": text}),
            )
            changed += 1
        await cur.execute(Q["mark_alerted"], {"device_id": device_id, "holes": holes})
    return changed
