"""One process per MQTT client id: a PostgreSQL session advisory lock on the id, held on
a connection of its own for as long as the process runs.

The broker would let a second process with the same client id take the session over,
and the two would then kick each other off in turn, each taking the other's
unacknowledged messages with it. The lock makes the second process refuse to start,
naming the holder. PostgreSQL releases the lock when the holder's connection ends (its
process stopped or died), so a restart finds it free; a predecessor that is still being
torn down is waited for a few seconds.

If the lock's connection is lost while running (the database went away), the lock is
gone too: :meth:`IdentityLock.keep` takes it again once the database answers, and stops
the service if another process holds it by then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg

from service.startup import StartupError, connect_database, instance_name

log = logging.getLogger(__name__)
LOCK_CLASS = 0x484F4D45  # "HOME": the first key of every Homeward advisory lock
_WAIT_FOR_PREDECESSOR_S = 5.0
_CHECK_EVERY_S = 5.0

_HOLDER = """
SELECT a.application_name, host(a.client_addr), a.backend_start
FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %(class)s::int4::oid
  AND l.objid = hashtext(%(id)s)::oid AND l.objsubid = 2 AND l.database = (
    SELECT oid FROM pg_database WHERE datname = current_database())
"""


class IdentityLost(RuntimeError):
    """Another process took this client id while the lock's connection was down."""


class IdentityLock:
    def __init__(self, dsn: str, client_id: str) -> None:
        self._dsn = dsn
        self.client_id = client_id
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.held = False

    async def _try(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock(%(class)s, hashtext(%(id)s))",
            {"class": LOCK_CLASS, "id": self.client_id},
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _holder(self, conn: psycopg.AsyncConnection[Any]) -> str:
        cur = await conn.execute(_HOLDER, {"class": LOCK_CLASS, "id": self.client_id})
        row = await cur.fetchone()
        if row is None:
            return "another process"
        name, address, since = row
        where = f" from {address}" if address else ""
        return f"{name or 'a process'}{where}, connected since {since:%Y-%m-%d %H:%M:%S %Z}"

    async def acquire(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Take the lock on ``conn`` (kept for the life of the process) or refuse."""
        deadline = time.monotonic() + _WAIT_FOR_PREDECESSOR_S
        try:
            while not await self._try(conn):
                if time.monotonic() > deadline:
                    holder = await self._holder(conn)
                    raise StartupError(
                        f"MQTT client id {self.client_id!r} is in use by {holder}: each"
                        " process needs its own HOMEWARD_MQTT_CLIENT_ID (a second process"
                        " with the same id would take the first one's broker session)"
                    )
                await asyncio.sleep(0.25)
        except BaseException:
            await conn.close()
            raise
        self._conn, self.held = conn, True
        log.info("MQTT client id %r is this process's (advisory lock)", self.client_id)

    async def keep(self) -> None:
        """Watch the lock's connection; take the lock again after the database was away.
        Raises :class:`IdentityLost` when another process holds it by then."""
        while True:
            await asyncio.sleep(_CHECK_EVERY_S)
            if self._conn is not None and not self._conn.closed:
                try:
                    await asyncio.wait_for(self._conn.execute("SELECT 1"), _CHECK_EVERY_S)
                    continue
                except (psycopg.OperationalError, TimeoutError):
                    pass
            if self.held:
                log.error("identity lock lost with its database connection; taking it again")
            self.held = False
            await self._close()
            try:
                conn = await connect_database(
                    self._dsn, timeout_s=1, application_name=instance_name(self.client_id)
                )
            except StartupError:
                continue  # still away: the writer holds its acknowledgements meanwhile
            if not await self._try(conn):
                holder = await self._holder(conn)
                await conn.close()
                raise IdentityLost(
                    f"MQTT client id {self.client_id!r} was taken by {holder} while the"
                    " database was unreachable"
                )
            self._conn, self.held = conn, True
            log.info("identity lock on MQTT client id %r taken again", self.client_id)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await asyncio.wait_for(conn.close(), timeout=1)
            except (TimeoutError, psycopg.Error) as exc:
                log.warning("identity lock connection not closed cleanly: %s", exc)

    async def release(self) -> None:
        """Closing the connection releases the lock."""
        self.held = False
        await self._close()
