"""Readings posted over HTTP by hubs and phone apps that cannot speak MQTT.

A posted message joins the same queue as a message from the broker: the same
validation, quarantine, storage and rules, in the same batches. Its answer waits for the
COMMIT that stored (or quarantined) it — the moment an MQTT message is acknowledged —
and then says what happened, read back from the database: stored, duplicate (the
device had sent that ``msg_id`` before) or quarantined with its reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import psycopg

from homeward.config import Settings
from homeward.db.queries import load_queries
from ingest.mqtt_source import Inbound

Q = load_queries(Path(__file__).with_name("http_source.sql"))

HTTP_GENERATION = -1  # an Inbound from HTTP: never dropped on an MQTT reconnect
Verdict = Literal["stored", "duplicate", "quarantined"]


@dataclass(frozen=True, slots=True)
class Posted:
    """What became of one posted message, after the COMMIT."""

    verdict: Verdict
    readings: int  # rows of this message now in ``readings``
    reason: str | None = None  # quarantine reason
    detail: str | None = None


class NotAccepting(Exception):
    """The service is stopping, or the message was not stored in time: send it again
    (with the same ``msg_id``, it is stored once)."""


class HttpSource:
    def __init__(
        self,
        settings: Settings,
        submit: Callable[[Inbound], None],
        accepting: Callable[[], bool],
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self._s = settings
        self._submit = submit
        self._accepting = accepting
        self._timeout_s = timeout_s
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._next = 0

    def acknowledge(self, messages: list[Inbound]) -> list[Inbound]:
        """Wake the requests whose messages were just committed; return the others."""
        rest = []
        for message in messages:
            if message.generation == HTTP_GENERATION:
                future = self._waiting.pop(message.mid, None)
                if future is not None and not future.done():
                    future.set_result(None)
            else:
                rest.append(message)
        return rest

    async def post(self, device_id: str, body: bytes) -> Inbound:
        """Queue ``body`` as a reading message of ``device_id`` (already authenticated)
        and return once the COMMIT that stored or quarantined it is done."""
        if not self._accepting():
            raise NotAccepting("the service is stopping")
        self._next += 1
        inbound = Inbound(
            mid=self._next,
            generation=HTTP_GENERATION,
            topic=self._s.readings_topic(device_id),
            payload=body,
            retained=False,
            qos=1,
            received_at=time.time(),
        )
        committed = asyncio.get_running_loop().create_future()
        self._waiting[inbound.mid] = committed
        self._submit(inbound)
        try:
            await asyncio.wait_for(committed, self._timeout_s)
        except TimeoutError as exc:
            self._waiting.pop(inbound.mid, None)
            raise NotAccepting(f"not stored within {self._timeout_s:g} s") from exc
        return inbound


async def outcome(conn: psycopg.AsyncConnection[Any], inbound: Inbound) -> Posted:
    digest = hashlib.sha256(inbound.payload).digest()
    cur = await conn.execute(Q["posted_quarantine"], {"topic": inbound.topic, "digest": digest})
    if row := await cur.fetchone():
        return Posted("quarantined", 0, reason=row[0], detail=row[1])
    msg_id = orjson.loads(inbound.payload)["msg_id"]  # it was stored: it is a valid message
    cur = await conn.execute(
        Q["posted_readings"],
        {
            "device_id": inbound.topic.split("/")[-2],
            "msg_id": msg_id,
            "received_at": inbound.received_at,
        },
    )
    count, fresh = await cur.fetchone() or (0, None)
    return Posted("stored" if fresh else "duplicate", int(count))
