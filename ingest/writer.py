"""Batch storage: one transaction per batch, COPY into staging, idempotent INSERT.

Inside one transaction a batch's readings are COPYed into a temporary table, each
device's binding is resolved at the reading's own time, new rows are inserted with
``ON CONFLICT DO NOTHING`` on (device, message id, metric, time), and every rejected
message is written to ``quarantine``. Only after COMMIT does the caller acknowledge.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import psycopg

from homeward.db.queries import load_queries
from homeward.domain import DeviceMessage, Rejection, RejectReason
from ingest.activity import DeviceActivity
from ingest.mqtt_source import Inbound
from ingest.quarantine_gate import QuarantineGate, kept_payload
from ingest.status import StatusUpdate

log = logging.getLogger(__name__)
Q = load_queries(Path(__file__).with_name("writer.sql"))

Parsed = DeviceMessage | Rejection | StatusUpdate | None  # None: nothing to store


@dataclass(frozen=True, slots=True)
class Item:
    """A message as received and as validated at the edge."""

    inbound: Inbound
    parsed: Parsed
    late: bool = False


class StoredReading(NamedTuple):
    """A reading newly stored by a batch (duplicates are not returned). A named tuple:
    a batch makes thousands, straight from the rows the INSERT returns."""

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
    flags: list[str] | None = None  # device flags, ``implausible`` (alerts/quality.py)


@dataclass(frozen=True, slots=True)
class BatchResult:
    stored: list[StoredReading]
    offered: int  # readings offered for storage
    quarantined: int  # messages quarantined


# The columns of copy_incoming, in order: a binary COPY with its types given costs a
# quarter of a text one per row (each value dumped by its column's binary dumper).
_INCOMING_TYPES = (
    "int4", "timestamptz", "text", "text", "float8", "timestamptz", "text", "text[]", "bool",
    "text", "bool", "text", "int8",
)  # fmt: skip


def _stored_row(_cursor: Any) -> Callable[[Sequence[Any]], StoredReading]:
    return StoredReading._make  # columns in the order store_readings returns them


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def safe_text(text: str, limit: int = 2000) -> str:
    """Text PostgreSQL can store: NUL escaped, lone surrogates replaced, length bounded."""
    bounded = text[:limit].replace("\x00", "\\x00")[:limit]
    return bounded.encode("utf-8", "replace").decode("utf-8")


def _reading_rows(seq: int, item: Item, message: DeviceMessage) -> list[tuple[Any, ...]]:
    received = _utc(item.inbound.received_at)
    ctx = message.context
    consciousness = ctx.consciousness.value if ctx.consciousness is not None else None
    return [
        (
            seq,
            message.measured_at,
            message.device_id,
            r.metric,
            r.value,
            received,
            message.msg_id,
            list(r.flags) or None,
            ctx.on_oxygen,
            consciousness,
            item.late,
            message.patient_nhs_number,
            message.device_seq,
        )
        for r in message.readings
    ]


def _quarantine_row(
    item: Item, rejection: Rejection, keep_bytes: int, times: int = 1
) -> dict[str, Any]:
    kept = kept_payload(item.inbound.payload, keep_bytes)
    return {
        "received_at": _utc(item.inbound.received_at),
        "topic": safe_text(item.inbound.topic, 512),
        "device_id": safe_text(rejection.device_id, 64) if rejection.device_id else None,
        "msg_id": safe_text(rejection.msg_id, 200) if rejection.msg_id else None,
        "reason": rejection.reason.value,
        "detail": safe_text(rejection.detail),
        "payload": kept.prefix,
        "payload_bytes": kept.size,
        "payload_sha256": kept.sha256,
        "times": times,
        "security_event": rejection.reason in _SECURITY_EVENTS,
    }


_SECURITY_EVENTS = (RejectReason.PATIENT_MISMATCH, RejectReason.CONFLICT)
_RATE_LIMITED_SHA = hashlib.sha256(b"homeward:rate_limited").digest()  # one row per topic


def _rate_limited_row(item: Item, source: str, times: int, per_minute: int) -> dict[str, Any]:
    row = _quarantine_row(
        Item(replace(item.inbound, payload=b""), None),
        Rejection(
            RejectReason.RATE_LIMITED,
            f"more than {per_minute} rejected messages a minute from {source}: the ones "
            "beyond that are counted in times_seen, not kept (HOMEWARD_QUARANTINE_PER_MINUTE)",
            device_id=None if source.startswith("topic:") else source,
        ),
        0,
        times,
    )
    return {**row, "payload_sha256": _RATE_LIMITED_SHA}


_UNRESOLVED_DETAIL = {
    "unknown_device": "device {device} is not registered (homeward device add)",
    "unbound_device": "device {device} is not bound to a patient at {time}",
    "patient_mismatch": (
        "payload names patient {claimed} but device {device} is bound to another patient; "
        "the binding wins and the reading was not stored (security event)"
    ),
}


def _unresolved(reason: str, message: DeviceMessage) -> Rejection:
    return Rejection(
        RejectReason(reason),
        _UNRESOLVED_DETAIL[reason].format(
            device=message.device_id,
            time=message.measured_at.isoformat(),
            claimed=message.patient_nhs_number,
        ),
        device_id=message.device_id,
        msg_id=message.msg_id,
    )


class Stage(Protocol):
    """Work done inside the batch transaction on the newly stored readings (the rules)."""

    async def __call__(
        self, cur: psycopg.AsyncCursor[Any], stored: list[StoredReading], now: datetime
    ) -> None: ...

    def rolled_back(self, stored: list[StoredReading]) -> None: ...

    async def keep(
        self, cur: psycopg.AsyncCursor[Any], stored: list[StoredReading], errors: dict[int, str]
    ) -> None:
        """The stage failed for these readings: keep them for re-evaluation, visibly."""
        ...


class BatchStore:
    """Owns one database connection for the writer; reconnects after a failure."""

    def __init__(
        self,
        dsn: str,
        *,
        statement_timeout_ms: int = 30_000,
        stage: Stage | None = None,
        gate: QuarantineGate | None = None,
    ) -> None:
        self._dsn = dsn
        self.gate = gate or QuarantineGate(per_minute=60, keep_bytes=4096)
        self._statement_timeout_ms = statement_timeout_ms
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._stage = stage
        self.stage_errors = 0

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn,
                connect_timeout=5,
                options=f"-c statement_timeout={self._statement_timeout_ms}",
            )
            await conn.execute(Q["create_incoming"])
            await conn.commit()
            self._conn = conn
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def reset(self) -> None:
        """Drop the connection after an error; the next write reconnects."""
        if self._conn is not None:
            try:
                await self._conn.close()
            finally:
                self._conn = None

    async def write(
        self, items: list[Item], activity: dict[str, DeviceActivity] | None = None
    ) -> BatchResult:
        """Store one batch in one transaction. Raises psycopg errors unchanged."""
        conn = await self._connection()
        rows: list[tuple[Any, ...]] = []
        quarantine: list[dict[str, Any]] = []
        accepted: dict[int, tuple[Item, DeviceMessage]] = {}
        rejected: list[tuple[Item, Rejection]] = []
        for seq, item in enumerate(items):
            if isinstance(item.parsed, Rejection):
                rejected.append((item, item.parsed))
            elif isinstance(item.parsed, DeviceMessage):
                accepted[seq] = (item, item.parsed)
                rows.extend(_reading_rows(seq, item, item.parsed))
        stored: list[StoredReading] = []
        offered = len(rows)
        try:
            async with conn.transaction():
                cur = conn.cursor()
                if rows:
                    async with cur.copy(Q["copy_incoming"]) as copy:
                        copy.set_types(_INCOMING_TYPES)
                        for row in rows:
                            await copy.write_row(row)
                    async with conn.cursor(row_factory=_stored_row) as ins:
                        await ins.execute(Q["store_readings"])
                        stored = await ins.fetchall()
                    skip: list[int] = []
                    if len(stored) < len(rows):  # duplicates, or readings that cannot be stored
                        await cur.execute(Q["unresolved_messages"])
                        for seq, reason, _bound in await cur.fetchall():
                            item, message = accepted[seq]
                            rejected.append((item, _unresolved(reason, message)))
                            skip.append(seq)
                        stored, conflicts = await _conflicts(cur, stored, accepted)
                        rejected += conflicts.rejections
                        skip += conflicts.seqs
                        offered -= conflicts.readings
                    if any(m.device_seq is not None for _, m in accepted.values()):
                        await cur.execute(Q["advance_sequences"], {"skip": skip})
                    if stored and self._stage is not None:
                        await self._run_stage(cur, stored)
                quarantine = self._admitted(rejected)
                if quarantine:
                    await cur.executemany(Q["quarantine_message"], quarantine)
                if activity:
                    await cur.execute(Q["touch_devices"], _activity_params(activity))
        except BaseException:
            if stored and self._stage is not None:
                self._stage.rolled_back(stored)  # the commit did not happen
            raise
        return BatchResult(stored=stored, offered=offered, quarantined=len(quarantine))

    def _admitted(self, rejected: list[tuple[Item, Rejection]]) -> list[dict[str, Any]]:
        """The quarantine rows this batch writes: each rejection the gate admits, and
        one ``rate_limited`` row per topic counting those it does not."""
        gate = self.gate
        rows: list[dict[str, Any]] = []
        limited: dict[str, tuple[Item, str, int]] = {}
        for item, rejection in rejected:
            source = rejection.device_id or f"topic:{item.inbound.topic[:200]}"
            if gate.admit(source, id(item.inbound)):
                rows.append(_quarantine_row(item, rejection, gate.keep_bytes))
            else:
                first, _source, times = limited.get(item.inbound.topic, (item, source, 0))
                limited[item.inbound.topic] = (first, source, times + 1)
        for first, source, times in limited.values():
            rows.append(_rate_limited_row(first, source, times, gate.per_minute))
        return rows

    async def _run_stage(self, cur: psycopg.AsyncCursor[Any], stored: list[StoredReading]) -> None:
        assert self._stage is not None
        try:
            async with cur.connection.transaction():  # a savepoint: a rule bug spares the batch
                await self._stage(cur, stored, datetime.now(UTC))
        except psycopg.OperationalError:
            self._stage.rolled_back(stored)
            raise
        except Exception as exc:  # a bug in the stage must not stop ingest, nor be silent
            self._stage.rolled_back(stored)
            self.stage_errors += 1
            log.exception("rule stage failed for %d readings; kept for re-evaluation", len(stored))
            error = f"{type(exc).__name__}: {exc}"[:500]
            # In the batch's transaction: the readings commit with their place in the
            # backlog and a technical alert, or (if even that fails) not at all.
            await self._stage.keep(cur, stored, {r.patient_id: error for r in stored})


@dataclass
class _Conflicts:
    rejections: list[tuple[Item, Rejection]]
    seqs: list[int]
    readings: int  # readings of the conflicting messages (not duplicates)


async def _conflicts(
    cur: psycopg.AsyncCursor[Any],
    stored: list[StoredReading],
    accepted: dict[int, tuple[Item, DeviceMessage]],
) -> tuple[list[StoredReading], _Conflicts]:
    """Messages that reuse a stored reading's key with another value: quarantined as a
    conflict (a security event), and none of their readings stored."""
    await cur.execute(Q["conflicting_messages"])
    found: dict[int, list[str]] = {}
    for seq, metric, had, offered, had_seq, offered_seq in await cur.fetchall():
        found.setdefault(seq, []).append(
            f"{metric} stored {had:g} (device_seq {had_seq}), offered {offered:g} "
            f"(device_seq {offered_seq})"
        )
    if not found:
        return stored, _Conflicts([], [], 0)
    seqs = sorted(found)
    await cur.execute(Q["drop_conflicting_rows"], {"seqs": seqs})
    dropped = {tuple(row) for row in await cur.fetchall()}
    kept = [r for r in stored if (r.device_id, r.msg_id, r.metric, r.time) not in dropped]
    rejections = []
    for seq in seqs:
        item, message = accepted[seq]
        detail = (
            f"message {message.msg_id} of device {message.device_id} reuses the key of a "
            f"stored reading with another value ({'; '.join(found[seq])}): not a "
            "redelivery; nothing of it was stored (security event)"
        )
        rejection = Rejection(RejectReason.CONFLICT, detail, message.device_id, message.msg_id)
        rejections.append((item, rejection))
    readings = sum(len(accepted[seq][1].readings) for seq in seqs)
    return kept, _Conflicts(rejections, seqs, readings)


def _activity_params(activity: dict[str, DeviceActivity]) -> dict[str, list[Any]]:
    ids = sorted(activity)  # a fixed order: two workers never deadlock on devices rows
    return {
        "device_ids": ids,
        "last_msg_at": [activity[d].last_msg_at for d in ids],
        "battery": [activity[d].battery for d in ids],
        "firmware": [activity[d].firmware for d in ids],
        "status": [activity[d].status for d in ids],
        "status_at": [activity[d].status_at for d in ids],
    }
