"""Batching, storage with retry, and acknowledgement after COMMIT.

``submit`` runs on the event loop thread for each inbound message and queues it.
``run`` forms batches bounded by size and time, validates their payloads (pure), stores
each batch in one transaction, then acknowledges its messages in arrival order and
hands the newly stored readings to the post-commit handlers. While a batch is in the
database, the messages of the next one are validated, in arrival order as always.

While the database is down the current batch is retried with backoff and nothing is
acknowledged; the broker stops sending once Receive Maximum messages are outstanding,
so the queue here never grows beyond that bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from devices.payload import parse_reading_message
from homeward.config import Settings
from homeward.domain import DeviceMessage, Rejection, RejectReason
from ingest.activity import ACTIVITY_EVERY_S, ActivityBuffer, DeviceActivity
from ingest.http_source import HTTP_GENERATION
from ingest.mqtt_source import Inbound, backoff_s
from ingest.progress import Progress, ProgressWatch
from ingest.status import StatusUpdate, parse_status_message
from ingest.writer import BatchResult, BatchStore, Item, StoredReading

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[StoredReading]], Awaitable[None]]
_PARSE_SLICE = 16  # messages validated ahead between looks at the database's replies


@dataclass
class PipelineStats:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    db_ok: bool = True
    db_failures: int = 0
    handler_errors: int = 0
    last_commit_at: float = 0.0
    last_error: str | None = None
    max_pending: int = 0
    deferred: int = 0
    batches_split: int = 0  # batches the database refused, split to isolate the message
    isolated: int = 0  # messages the database refused, quarantined as storage_error
    unstorable: int = 0  # refused even as a quarantine row: acknowledged and lost (a bug)
    activity_dropped: int = 0  # device activity rows the database refused (a bug)
    parser_errors: int = 0  # messages a validator failed on (a bug), quarantined


class IngestPipeline:
    def __init__(
        self,
        settings: Settings,
        store: BatchStore,
        ack: Callable[[list[Inbound]], int],
        *,
        handlers: tuple[BatchHandler, ...] = (),
        pause: Callable[[], None] = lambda: None,
        resume: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._s = settings
        self._store = store
        self._ack = ack
        self._handlers = handlers
        self._pause, self._resume = pause, resume
        self._high_water = settings.receive_maximum
        self._paused = False
        self._pending: deque[Inbound] = deque()
        self._parsed: deque[Item] = deque()  # validated ahead, while a batch is written
        self._has_items = asyncio.Event()
        self._full = asyncio.Event()
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._activity = ActivityBuffer()
        self._status_prefix = f"{settings.topic_root}/devices/"
        self._in_flight = 0  # messages of the batch being written
        self.stats = PipelineStats()
        # Told each batch's size and how long it took to store, once committed (metrics).
        self.on_batch: Callable[[int, float], None] | None = None
        self.progress = ProgressWatch(settings.ingest_stall_after_s, clock)

    @property
    def accepting(self) -> bool:
        """Whether a submitted message will be stored (not while stopping)."""
        return not self._stopping

    @property
    def pending(self) -> int:
        return len(self._parsed) + len(self._pending)

    def progress_now(self) -> Progress:
        """Whether ingest makes progress while messages wait (the watchdog)."""
        return self.progress.read(self.pending + self._in_flight)

    @property
    def unacknowledged(self) -> int:
        """Messages received and not acknowledged: queued, in the batch being written, or
        turned away while stopping. The broker keeps each of them for the next start."""
        return self.pending + self._in_flight + self.stats.deferred

    # ---- inbound (event loop thread) ---------------------------------------------------

    def submit(self, inbound: Inbound) -> None:
        """Queue one message as received. Parsing waits until its batch is formed: a
        queue of raw messages holds one object each for the garbage collector to trace,
        where parsed ones hold about ten (see docs/performance.md)."""
        if self._stopping:
            # Not acknowledged: the broker keeps it in our session for the next start.
            self.stats.deferred += 1
            return
        self._pending.append(inbound)
        self.progress.work_arrived()
        size = self.pending
        self.stats.max_pending = max(self.stats.max_pending, size)
        self._has_items.set()
        self._idle.clear()
        if size >= self._s.batch_size:
            self._full.set()
        if size >= self._high_water and not self._paused:
            self._paused = True  # memory stays bounded whatever the broker sends
            self._pause()

    def _parse(self, inbound: Inbound) -> Item:
        """Validate one message (pure) and note its device's activity. Whatever the
        validators do, the message becomes an item: a bug in them quarantines the
        message (``parser_error``) instead of stopping ingest."""
        try:
            return self._validate(inbound)
        except Exception as exc:
            self.stats.parser_errors += 1
            log.exception("validating a message on %r failed", inbound.topic[:200])
            return Item(
                inbound,
                Rejection(RejectReason.PARSER_ERROR, f"validation failed: {exc!r}"[:500]),
            )

    def _validate(self, inbound: Inbound) -> Item:
        if inbound.topic.endswith("/status") and inbound.topic.startswith(self._status_prefix):
            # Acknowledged with the batch it lands in; retained, so resent on resubscribe.
            return Item(inbound, self._record_status(inbound))
        now = datetime.fromtimestamp(inbound.received_at, UTC)
        parsed = parse_reading_message(
            inbound.topic,
            inbound.payload,
            retained=inbound.retained,
            now=now,
            max_payload_bytes=self._s.max_payload_bytes,
            future_tolerance_s=self._s.future_tolerance_s,
            topic_root=self._s.topic_root,
        )
        late = False
        if isinstance(parsed, DeviceMessage):
            late = (now - parsed.measured_at).total_seconds() > self._s.late_after_s
            self._activity.note_message(parsed.device_id, now, parsed.battery, parsed.firmware)
        return Item(inbound, parsed, late)

    def _record_status(self, inbound: Inbound) -> StatusUpdate | Rejection | None:
        update = parse_status_message(inbound.topic, inbound.payload, self._s.topic_root)
        if isinstance(update, StatusUpdate):
            at = datetime.fromtimestamp(inbound.received_at, UTC)
            self._activity.note_status(update.device_id, at, update.status, update.battery)
        return update

    def on_new_connection(self, generation: int, via: str = "") -> None:
        """Forget queued messages of an earlier connection of the same source (``via``):
        the broker redelivers them."""
        before = self.pending
        keep = (generation, HTTP_GENERATION)  # posted messages wait for no broker

        def current(i: Inbound) -> bool:
            return i.via != via or i.generation in keep

        self._parsed = deque(i for i in self._parsed if current(i.inbound))
        self._pending = deque(i for i in self._pending if current(i))
        if self._paused and self.pending < self._high_water // 2:
            self._paused = False
            self._resume()
        if not self.pending and not self._in_flight:
            self.progress.idle()
        if dropped := before - self.pending:
            log.info("dropping %d queued messages of an earlier connection", dropped)

    # ---- writer loop ------------------------------------------------------------------

    async def run(self) -> None:
        flush_s = self._s.flush_interval_ms / 1000
        while True:
            if not self.pending:
                self._idle.set()
                if self._stopping:
                    return
                self._has_items.clear()
                if not self._activity:
                    await self._has_items.wait()
                    continue
                # Quiet now, but device activity waits for its round (last message, battery,
                # status — the silence check reads them): written on its own when no batch
                # comes to carry it.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._has_items.wait(), timeout=ACTIVITY_EVERY_S)
                if not self.pending:
                    await self._write_activity_alone()
                continue
            if self.pending < self._s.batch_size and not self._stopping:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), timeout=flush_s)
            batch = [self._next_item() for _ in range(min(self.pending, self._s.batch_size))]
            if self._paused and self.pending < self._high_water // 2:
                self._paused = False
                self._resume()
            writing = asyncio.create_task(self._store_and_ack(batch), name="ingest-batch")
            try:
                await self._parse_ahead(writing)
                await writing
            finally:
                # Cancelled (a stop that could not wait): the batch's transaction rolls
                # back and none of its messages is acknowledged.
                writing.cancel()

    def _next_item(self) -> Item:
        return self._parsed.popleft() if self._parsed else self._parse(self._pending.popleft())

    async def _parse_ahead(self, writing: asyncio.Task[None]) -> None:
        """While a batch is in the database, validate the messages of the next one, a
        few at a time, so that the process works instead of waiting for the server."""
        await asyncio.sleep(0)  # the write starts first: it takes the device activity so far
        while not writing.done() and self._pending and len(self._parsed) < self._s.batch_size:
            for _ in range(min(_PARSE_SLICE, len(self._pending))):
                self._parsed.append(self._parse(self._pending.popleft()))
            await asyncio.sleep(0)

    async def stop(self, timeout_s: float = 30.0) -> bool:
        """Take no more messages; store and acknowledge what is queued within
        ``timeout_s``. Returns whether everything was; if not, the caller cancels
        :meth:`run` and the broker keeps what is left (nothing unstored is acknowledged)."""
        self._stopping = True
        self._has_items.set()
        self._full.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=max(timeout_s, 0.01))
        except TimeoutError:
            return False
        return True

    async def _store_and_ack(self, batch: list[Item]) -> None:
        self._in_flight = len(batch)
        began = time.perf_counter()
        try:
            result = await self._store_with_retry(batch)
        finally:
            self._in_flight = 0
            self._store.gate.settle(id(item.inbound) for item in batch)
        self._ack([item.inbound for item in batch])
        s = self.stats
        s.batches += 1
        s.stored += len(result.stored)
        s.duplicates += result.offered - len(result.stored)
        s.quarantined += result.quarantined
        s.last_commit_at = time.time()
        self.progress.committed(still_waiting=self.pending > 0)
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - began)
        if result.stored:
            for handler in self._handlers:
                try:
                    await handler(result.stored)
                except Exception:  # a rule bug must not stop ingest; counted, logged, visible
                    s.handler_errors += 1
                    log.exception("post-commit handler %r failed", handler)

    async def _store_with_retry(self, batch: list[Item]) -> BatchResult:
        """Store a batch; one the database refuses is split until the message it refuses
        is isolated and quarantined, the rest stored. Acknowledged by the caller only
        after this returns, i.e. after every part is committed."""
        records = [i for i in batch if isinstance(i.parsed, DeviceMessage | Rejection)]
        activity = self._activity.take()
        try:
            return await self._write(records, activity)
        except _Refused as refused:
            log.error("batch of %d refused (%s); splitting it", len(records), refused.cause)
            self.stats.batches_split += 1
        result = await self._store_split(records)
        if activity:
            try:
                await self._write([], activity)
            except _Refused as refused:  # validated values: a bug if it ever happens
                self.stats.activity_dropped += len(activity)
                log.error("device activity of %d devices dropped: %s", len(activity), refused)
        return result

    async def _write_activity_alone(self) -> None:
        activity = self._activity.take()
        if not activity:
            return
        try:
            await self._write([], activity)
        except _Refused as refused:  # validated values: a bug if it ever happens
            self.stats.activity_dropped += len(activity)
            log.error("device activity of %d devices dropped: %s", len(activity), refused)

    async def _write(
        self, records: list[Item], activity: dict[str, DeviceActivity] | None
    ) -> BatchResult:
        """One transaction, retried while the database is unreachable; raises
        :class:`_Refused` when the database (or the encoding of a value) refuses it."""
        attempt = 0
        while True:
            try:
                result = await self._store.write(records, activity)
            except psycopg.OperationalError as exc:
                await self._note_db_failure(exc, attempt)
                attempt += 1
                continue
            except Exception as exc:  # refused: this data cannot be stored as it is
                await self._store.reset()
                raise _Refused(exc) from exc
            if not self.stats.db_ok:
                log.info("database reachable again after %d attempts", attempt)
            self.stats.db_ok = True
            return result

    async def _note_db_failure(self, exc: Exception, attempt: int) -> None:
        self.stats.db_ok = False
        self.stats.db_failures += 1
        self.stats.last_error = f"database: {exc}".strip()
        if attempt == 0:
            log.error("database unavailable, holding acknowledgements: %s", exc)
        await self._store.reset()
        await asyncio.sleep(backoff_s(attempt, cap_s=self._s.db_retry_max_s))

    async def _store_split(self, records: list[Item]) -> BatchResult:
        """Bisect a refused batch, in arrival order: a half that stores is done, a half
        that is refused is split again, down to the single message that is refused."""
        if len(records) <= 1:
            return await self._store_single(records[0]) if records else BatchResult([], 0, 0)
        middle = len(records) // 2
        parts: list[BatchResult] = []
        for half in (records[:middle], records[middle:]):
            try:
                parts.append(await self._write(half, None))
            except _Refused:
                parts.append(await self._store_split(half))
        return BatchResult(
            [r for part in parts for r in part.stored],
            sum(part.offered for part in parts),
            sum(part.quarantined for part in parts),
        )

    async def _store_single(self, item: Item) -> BatchResult:
        """One message the database refuses: quarantined with the reason instead."""
        try:
            return await self._write([item], None)
        except _Refused as refused:
            self.stats.isolated += 1
            log.error("message on %r refused by the database: %s", item.inbound.topic, refused)
            detail = f"the database refused this message: {refused.cause}"
        rejection = Rejection(
            RejectReason.STORAGE_ERROR,
            detail,
            getattr(item.parsed, "device_id", None),
            getattr(item.parsed, "msg_id", None),
        )
        try:
            return await self._write([Item(item.inbound, rejection)], None)
        except _Refused as refused:  # not even its quarantine row: counted, never retried
            self.stats.unstorable += 1
            log.error("message on %r could not be quarantined: %s", item.inbound.topic, refused)
            return BatchResult([], 0, 0)


class _Refused(Exception):
    """The database refused a write for what it contains (not for being unreachable)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause
