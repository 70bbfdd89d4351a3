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
from ingest.activity import ActivityBuffer, DeviceActivity
from ingest.mqtt_source import Inbound, backoff_s
from ingest.status import StatusUpdate, parse_status_message
from ingest.writer import BatchResult, BatchStore, Item, StoredReading

log = logging.getLogger(__name__)

Handler = Callable[[list[StoredReading]], Awaitable[None]]
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


class IngestPipeline:
    def __init__(
        self,
        settings: Settings,
        store: BatchStore,
        ack: Callable[[list[Inbound]], int],
        *,
        handlers: tuple[Handler, ...] = (),
        pause: Callable[[], None] = lambda: None,
        resume: Callable[[], None] = lambda: None,
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
        self.stats = PipelineStats()

    @property
    def pending(self) -> int:
        return len(self._parsed) + len(self._pending)

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
        """Validate one message (pure) and note its device's activity."""
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

    def _record_status(self, inbound: Inbound) -> StatusUpdate | Rejection:
        update = parse_status_message(inbound.topic, inbound.payload, self._s.topic_root)
        if update is None:
            return Rejection(
                RejectReason.SCHEMA,
                'a status message must be "online", "offline" or {"status": ...}',
            )
        at = datetime.fromtimestamp(inbound.received_at, UTC)
        self._activity.note_status(update.device_id, at, update.status, update.battery)
        return update

    def on_new_connection(self, generation: int) -> None:
        """Forget queued messages of an earlier connection: the broker redelivers them."""
        before = self.pending
        self._parsed = deque(i for i in self._parsed if i.inbound.generation == generation)
        self._pending = deque(i for i in self._pending if i.generation == generation)
        if self._paused and self.pending < self._high_water // 2:
            self._paused = False
            self._resume()
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
                await self._has_items.wait()
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
                writing.cancel()  # only matters when this loop itself is cancelled

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

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Finish what is queued (store and acknowledge), then return."""
        self._stopping = True
        self._has_items.set()
        self._full.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            log.error("stopping with %d messages unstored (the broker keeps them)", self.pending)

    async def _store_and_ack(self, batch: list[Item]) -> None:
        result = await self._store_with_retry(batch)
        self._ack([item.inbound for item in batch])
        s = self.stats
        s.batches += 1
        s.stored += len(result.stored)
        s.duplicates += result.offered - len(result.stored)
        s.quarantined += result.quarantined
        s.last_commit_at = time.time()
        if result.stored:
            for handler in self._handlers:
                try:
                    await handler(result.stored)
                except Exception:  # a rule bug must not stop ingest; counted, logged, visible
                    s.handler_errors += 1
                    log.exception("post-commit handler %r failed", handler)

    async def _store_with_retry(self, batch: list[Item]) -> BatchResult:
        records = [i for i in batch if not isinstance(i.parsed, StatusUpdate)]
        activity = self._activity.take()
        attempt = 0
        while True:
            try:
                result = await self._store.write(records, activity)
            except psycopg.OperationalError as exc:
                await self._note_db_failure(exc, attempt)
                attempt += 1
                continue
            except psycopg.Error as exc:
                log.error("batch of %d refused (%s); storing one by one", len(records), exc)
                await self._store.reset()
                return await self._store_one_by_one(records, activity)
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

    async def _store_one_by_one(
        self, records: list[Item], activity: dict[str, DeviceActivity] | None
    ) -> BatchResult:
        """Isolate a poison message: it goes to quarantine, the others are stored."""
        stored: list[StoredReading] = []
        offered = quarantined = 0
        for index, item in enumerate(records):
            single = [item]
            attempt = 0
            while True:
                try:
                    result = await self._store.write(single, activity if index == 0 else None)
                    break
                except psycopg.OperationalError as exc:
                    await self._note_db_failure(exc, attempt)
                    attempt += 1
                except psycopg.Error as exc:
                    await self._store.reset()
                    device_id = getattr(item.parsed, "device_id", None)
                    msg_id = getattr(item.parsed, "msg_id", None)
                    single = [
                        Item(
                            item.inbound,
                            Rejection(
                                RejectReason.STORAGE_ERROR,
                                f"the database refused this message: {exc}",
                                device_id,
                                msg_id,
                            ),
                        )
                    ]
            stored += result.stored
            offered += result.offered
            quarantined += result.quarantined
        return BatchResult(stored, offered, quarantined)
