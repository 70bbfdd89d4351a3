"""Share-group membership: no reading waits on a stopped or crashed worker.

Mosquitto keeps an offline session in a shared subscription and goes on handing it its
share of the group's messages until the session expires (docs/operations.md). So:

* every worker has a row in ``ingest_members`` with a heartbeat (every ``heartbeat_s``);
* a graceful stop unsubscribes from the share group only when another member's
  heartbeat is fresh, under the group's row locks (two workers stopping at once never
  both leave); the last member stays subscribed, and the broker keeps the group's
  readings in its session for the next start;
* a running, subscribed worker reclaims the session of a peer that stopped as the last
  member, or whose heartbeat is older than ``peer_timeout_s`` (crashed): it connects with
  the peer's client id (a session takeover), stores and acknowledges what the session
  holds, unsubscribes it from the group, and disconnects;
* a peer that stays unreclaimed beyond the bound raises a service technical alert
  (``service_alerts``) and shows in ``/health``.

The decisions are SQL under row locks (ingest/membership.sql); the clock is the
database's, so workers on machines with different clocks agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from homeward.config import Settings
from homeward.db.queries import load_queries
from ingest.mqtt_source import Inbound, MqttSource

log = logging.getLogger(__name__)
Q = load_queries(Path(__file__).with_name("membership.sql"))

QUIET_S = 1.0  # a drained session: nothing received for this long, everything acknowledged
DRAIN_TIMEOUT_S = 120.0  # a reclaim that has not drained by then is retried
STRANDED_KIND = "share_stranded"


def stranded_after_s(settings: Settings) -> float:
    """The bound: a crashed worker's share is reclaimed within this long of its last
    heartbeat (timeout, plus up to two heartbeats to notice, plus the drain)."""
    return settings.mqtt_peer_timeout_s + 2 * settings.mqtt_heartbeat_s + 30.0


@dataclass
class Reclaim:
    client_id: str
    state: str
    messages: int = 0
    max_delay_s: float = 0.0  # received − measured_at of the readings it held
    seconds: float = 0.0
    completed: bool = False


@dataclass
class MembershipStats:
    joined: bool = False
    state: str = "starting"
    last_heartbeat_ok: bool = False
    reclaims: int = 0
    reclaimed_messages: int = 0
    last_reclaim: dict[str, Any] | None = None
    stranded: list[dict[str, Any]] = field(default_factory=list)
    last_error: str | None = None


def _measured_delay_s(inbound: Inbound) -> float:
    """How long after its measurement a reclaimed reading arrived (0 when unreadable)."""
    try:
        doc = orjson.loads(inbound.payload)
        measured = datetime.fromisoformat(doc["measured_at"]).timestamp()
    except Exception:  # any unreadable payload: no delay to report
        return 0.0
    return max(0.0, inbound.received_at - measured)


class Membership:
    """This worker's membership of its share group, and the reclaiming of its peers."""

    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        source: MqttSource,
        submit: Callable[[Inbound], None],
        pending: Callable[[], int],
        on_connected: Callable[[int, str], None],
    ) -> None:
        self._s = settings
        self._pool = pool
        self.source = source
        self._submit = submit
        self._pending = pending
        self._on_connected = on_connected
        self.sources: dict[str, MqttSource] = {"": source}
        self.stats = MembershipStats()
        self._current: Reclaim | None = None
        self._stopping = False

    @property
    def _params(self) -> dict[str, Any]:
        s = self._s
        return {
            "me": s.mqtt_client_id,
            "client_id": s.mqtt_client_id,
            "group": s.mqtt_share_group,
            "timeout_s": s.mqtt_peer_timeout_s,
        }

    # ---- acknowledgement routing -------------------------------------------------------

    def ack(self, messages: list[Inbound]) -> int:
        """PUBACK each message on the connection it came on (ours or a reclaimed peer's)."""
        if all(m.via == "" for m in messages):
            return self.source.ack(messages)
        acked = 0
        by_via: dict[str, list[Inbound]] = {}
        for message in messages:
            by_via.setdefault(message.via, []).append(message)
        for via, group in by_via.items():
            source = self.sources.get(via)
            if source is not None:
                acked += source.ack(group)
        return acked

    # ---- own membership ----------------------------------------------------------------

    @property
    def _join_params(self) -> dict[str, Any]:
        return {**self._params, "host": socket.gethostname()[:200], "pid": os.getpid()}

    async def run(self) -> None:
        """Heartbeat, reclaim stopped or crashed peers (one at a time, beside the
        heartbeat), report stranded ones."""
        reclaiming: asyncio.Task[None] | None = None
        try:
            while not self._stopping:
                if await self._heartbeat() and not self._stopping:
                    if self.source.stats.subscribed and (reclaiming is None or reclaiming.done()):
                        reclaiming = asyncio.create_task(self._reclaim_due(), name="reclaim")
                    await self._check_stranded()
                await asyncio.sleep(self._s.mqtt_heartbeat_s)
        finally:
            if reclaiming is not None and not reclaiming.done():
                reclaiming.cancel()
                await asyncio.gather(reclaiming, return_exceptions=True)

    async def _heartbeat(self) -> bool:
        try:
            async with self._pool.connection(timeout=10) as conn:
                if self.stats.joined:
                    await conn.execute(Q["heartbeat"], self._params)
                else:
                    await conn.execute(Q["join"], self._join_params)
                    self.stats.joined = True
                    self.stats.state = "active"
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self.stats.last_heartbeat_ok = False
            self.stats.last_error = f"heartbeat: {exc}"
            return False
        self.stats.last_heartbeat_ok = True
        return True

    async def leave(self) -> str:
        """On a graceful stop: hand our share back if another member runs, else stay
        subscribed so the broker keeps the group's readings for the next start. Drains
        what the broker had already queued for us before returning ("left"/"stopped")."""
        self._stopping = True
        s = self._s
        try:
            async with self._pool.connection(timeout=10) as conn, conn.transaction():
                cur = await conn.execute(Q["lock_group"], self._params)
                rows = await cur.fetchall()
                others = [
                    cid
                    for cid, state, fresh in rows
                    if cid != s.mqtt_client_id and state == "active" and fresh
                ]
                leaving = bool(others) and self.source.stats.connected
                state = "left" if leaving else "stopped"
                await conn.execute(Q["set_state"], {**self._params, "state": state})
        except (psycopg.OperationalError, PoolTimeout) as exc:
            # Without the database we cannot know another member runs: stay a member.
            log.warning("stopping as a member of the share group (database: %s)", exc)
            self.stats.state = "stopped"
            return "stopped"
        self.stats.state = state
        if not leaving:
            log.info(
                "last member of share group %s: the broker keeps its readings", s.mqtt_share_group
            )
            return state
        if not await self.source.unsubscribe_shared():
            log.warning("leaving the share group was not confirmed; staying a member")
            await self._set_state("stopped")
            return "stopped"
        log.info("left share group %s (members running: %s)", s.mqtt_share_group, ", ".join(others))
        await self._drained(self.source, time.time())
        return state

    async def _set_state(self, state: str) -> None:
        with contextlib.suppress(psycopg.OperationalError, PoolTimeout):
            async with self._pool.connection(timeout=10) as conn:
                await conn.execute(Q["set_state"], {**self._params, "state": state})
        self.stats.state = state

    async def _drained(self, source: MqttSource, since: float) -> bool:
        """Wait until nothing has arrived for QUIET_S and everything was acknowledged."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            st = source.stats
            if not st.connected:
                return False
            unacked = st.received - st.acked - st.no_ack - st.stale_skipped
            quiet = time.time() - max(since, st.last_message_at) >= QUIET_S
            if quiet and unacked <= 0 and (source is not self.source or self._pending() == 0):
                return True
            await asyncio.sleep(0.05)
        return False

    # ---- reclaiming peers --------------------------------------------------------------

    async def _reclaim_due(self) -> None:
        try:
            async with self._pool.connection(timeout=10) as conn:
                cur = await conn.execute(Q["claim"], self._params)
                row = await cur.fetchone()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self.stats.last_error = f"claim: {exc}"
            return
        if row is None:
            return
        client_id, state, _heartbeat_at = row
        await self.reclaim(str(client_id), str(state))

    async def reclaim(self, client_id: str, state: str) -> Reclaim:
        """Take over a peer's session, store what it holds, unsubscribe it, disconnect."""
        s = self._s
        job = Reclaim(client_id, state)
        self._current = job
        began = time.monotonic()
        log.warning(
            "reclaiming the session of %s (%s) for share group %s",
            client_id,
            state,
            s.mqtt_share_group,
        )
        peer = MqttSource(
            s.model_copy(update={"mqtt_client_id": client_id}),
            lambda inbound: self._on_reclaimed(job, inbound),
            on_connected=lambda generation: self._on_connected(generation, client_id),
            subscribe=False,
            via=client_id,
        )
        self.sources[client_id] = peer
        try:
            connected_at = time.time()
            await peer.open()
            left = await peer.unsubscribe_shared()
            drained = left and await self._drained(peer, connected_at)
            if drained:
                async with self._pool.connection(timeout=10) as conn:
                    await conn.execute(Q["reclaimed"], {**self._params, "client_id": client_id})
                job.completed = True
        except (OSError, ConnectionError, TimeoutError) as exc:
            self.stats.last_error = f"reclaim {client_id}: {exc}"
            log.warning("reclaiming %s failed: %s", client_id, exc)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self.stats.last_error = f"reclaim {client_id}: {exc}"
        finally:
            await peer.stop()
            self.sources.pop(client_id, None)
            self._current = None
            if not job.completed:
                with contextlib.suppress(psycopg.OperationalError, PoolTimeout):
                    async with self._pool.connection(timeout=10) as conn:
                        await conn.execute(
                            Q["release_claim"], {**self._params, "client_id": client_id}
                        )
        job.seconds = time.monotonic() - began
        self.stats.reclaims += job.completed
        self.stats.reclaimed_messages += job.messages
        self.stats.last_reclaim = asdict(job)
        log.warning(
            "reclaimed %s: %d messages in %.1f s (oldest reading %.0f s after measurement)%s",
            client_id,
            job.messages,
            job.seconds,
            job.max_delay_s,
            "" if job.completed else " — not complete, retried",
        )
        return job

    def _on_reclaimed(self, job: Reclaim, inbound: Inbound) -> None:
        job.messages += 1
        job.max_delay_s = max(job.max_delay_s, _measured_delay_s(inbound))
        self._submit(inbound)

    # ---- visibility --------------------------------------------------------------------

    async def _check_stranded(self) -> None:
        s = self._s
        bound = stranded_after_s(s)
        scope = f"{s.mqtt_share_group}/"
        try:
            async with self._pool.connection(timeout=10) as conn:
                cur = await conn.execute(Q["stranded"], {**self._params, "bound_s": bound})
                rows = await cur.fetchall()
                subjects = [f"{scope}{cid}" for cid, *_ in rows]
                for (cid, state, heartbeat_at, age_s), subject in zip(rows, subjects, strict=True):
                    message = (
                        f"ingest worker {cid} ({state}) has not been heard from for "
                        f"{age_s:.0f} s and its session was not reclaimed: its share of the "
                        f"readings may be waiting in the broker (bound {bound:.0f} s)"
                    )
                    details = {
                        "client_id": cid,
                        "state": state,
                        "since": heartbeat_at.isoformat(),
                        "bound_s": bound,
                    }
                    cur = await conn.execute(
                        Q["raise_service_alert"],
                        {
                            "kind": STRANDED_KIND,
                            "subject": subject,
                            "message": message,
                            "details": Jsonb(details),
                        },
                    )
                    created = await cur.fetchone()
                    if created and created[1]:
                        log.error("technical alert: %s", message)
                await conn.execute(
                    Q["resolve_service_alerts"],
                    {"kind": STRANDED_KIND, "subjects": subjects, "scope": scope},
                )
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self.stats.last_error = f"stranded check: {exc}"
            return
        self.stats.stranded = [
            {"client_id": cid, "state": state, "silent_s": round(age_s, 1)}
            for cid, state, _at, age_s in rows
        ]

    def status(self) -> dict[str, Any]:
        current = self._current
        return {
            **asdict(self.stats),
            "client_id": self._s.mqtt_client_id,
            "share_group": self._s.mqtt_share_group,
            "subscribed": self.source.stats.subscribed,
            "bound_s": stranded_after_s(self._s),
            "reclaiming": current.client_id if current else None,
        }
