"""Alert events (raised, updated, acknowledged, escalated, notified, resolved, ...): one
statement appends them for the rules, the lifecycle, escalation and adherence alike."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from homeward.db.queries import load_queries

INSERT_EVENT = load_queries(Path(__file__).with_name("events.sql"))["insert_event"]


def event(alert_id: int, kind: str, actor: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of :data:`INSERT_EVENT` for one event."""
    return {"alert_id": alert_id, "kind": kind, "actor": actor, "data": Jsonb(dict(data))}
