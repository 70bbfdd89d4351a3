"""The team's live stream: PostgreSQL NOTIFY → server-sent events.

The service already sends ``NOTIFY homeward_team_<team>`` at the COMMIT that raises,
updates or acts on an alert (alerts/store.sql, alerts/lifecycle_store.py). One listening
connection per service (``LiveHub``) relays those to every open stream of the teams
concerned. An event carries only the alert's id, what happened and its priority — no
patient data — and the page then re-reads its queue (an audited read) to show it.

Events are numbered per service start (``id: <start>-<n>``); the last 1,000 are kept, so
a browser that reconnects with ``Last-Event-ID`` gets what it missed, or a ``resync``
event (re-read the whole queue) when its id is from another start or too old. A lost
listening connection is re-opened and every stream is told ``resync`` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)
CHANNEL_PREFIX = "homeward_team_"
KEEP = 1_000


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    name: str  # "alert" or "resync"
    team: str | None
    data: str


@dataclass(eq=False)
class _Subscriber:
    teams: frozenset[str]
    queue: asyncio.Queue[Event | None] = field(default_factory=lambda: asyncio.Queue(1_000))

    def offer(self, event: Event) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a stuck browser: it will resync
            self.queue.put_nowait(event)


def format_event(event: Event) -> bytes:
    lines = [f"id: {event.id}", f"event: {event.name}"]
    lines += [f"data: {line}" for line in event.data.splitlines() or [""]]
    return ("\n".join(lines) + "\n\n").encode()


class LiveHub:
    def __init__(self, conninfo: str, *, retry_s: float = 1.0) -> None:
        self.conninfo = conninfo
        self.retry_s = retry_s
        self.boot = secrets.token_hex(4)
        self._seq = 0
        self._recent: deque[tuple[int, Event]] = deque(maxlen=KEEP)
        self._subscribers: set[_Subscriber] = set()
        self._listening: set[str] = set()
        self._wanted: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    # ---- the listening connection --------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="web-live-hub")

    async def stop(self) -> None:
        for sub in list(self._subscribers):
            sub.queue.put_nowait(None)  # streams end: the server is stopping
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        first = True
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            except psycopg.OperationalError as exc:
                log.warning("live stream: cannot listen (%s); retrying", exc)
                await asyncio.sleep(self.retry_s)
                continue
            try:
                self._listening = set()
                if not first:
                    self._broadcast_resync()
                first = False
                self.connected.set()
                await self._listen(conn)
            except psycopg.OperationalError as exc:
                log.warning("live stream: listening connection lost (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                await conn.close()
            await asyncio.sleep(self.retry_s)

    async def _listen(self, conn: psycopg.AsyncConnection[object]) -> None:
        while True:
            await self._sync_channels(conn)
            self._changed.clear()
            async for note in conn.notifies(timeout=0.25):
                self._dispatch(note.channel, note.payload)
                if self._changed.is_set():
                    break

    async def _sync_channels(self, conn: psycopg.AsyncConnection[object]) -> None:
        wanted = {t for t, n in self._wanted.items() if n > 0}
        for team in wanted - self._listening:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL_PREFIX + team)))
        for team in self._listening - wanted:
            await conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(CHANNEL_PREFIX + team)))
        self._listening = wanted

    def _next_id(self) -> tuple[int, str]:
        self._seq += 1
        return self._seq, f"{self.boot}-{self._seq}"

    def _dispatch(self, channel: str, payload: str) -> None:
        team = channel.removeprefix(CHANNEL_PREFIX)
        seq, event_id = self._next_id()
        event = Event(event_id, "alert", team, payload)
        self._recent.append((seq, event))
        for sub in self._subscribers:
            if team in sub.teams:
                sub.offer(event)

    def _broadcast_resync(self) -> None:
        _, event_id = self._next_id()
        for sub in self._subscribers:
            sub.offer(Event(event_id, "resync", None, "{}"))

    # ---- streams -------------------------------------------------------------------

    def missed(self, teams: frozenset[str], last_event_id: str | None) -> list[Event] | None:
        """The events after ``last_event_id`` for these teams, or ``None`` when they
        cannot be told (another start, or older than what is kept): resync."""
        if not last_event_id:
            return []
        boot, _, number = last_event_id.partition("-")
        if boot != self.boot or not number.isdigit():
            return None
        last = int(number)
        if last > self._seq:
            return None
        if self._recent and last < self._recent[0][0] - 1:
            return None
        if not self._recent and last < self._seq:
            return None
        return [e for seq, e in self._recent if seq > last and e.team in teams]

    @contextlib.asynccontextmanager
    async def subscribe(self, teams: frozenset[str]) -> AsyncIterator[asyncio.Queue[Event | None]]:
        self.start()
        sub = _Subscriber(teams)
        self._subscribers.add(sub)
        for team in teams:
            self._wanted[team] = self._wanted.get(team, 0) + 1
        self._changed.set()
        try:
            yield sub.queue
        finally:
            self._subscribers.discard(sub)
            for team in teams:
                self._wanted[team] -= 1
            self._changed.set()

    def listening_to(self, team: str) -> bool:
        return team in self._listening
