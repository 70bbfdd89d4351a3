"""The long-running service: MQTT source → pipeline → database, plus the HTTP API.

Every background task is named and supervised: if one dies, the service stops with its
error instead of running half-alive. Shutdown stops intake, stores and acknowledges what
is queued, then disconnects (the broker keeps the session for the next start).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from alerts.jobs import Timers
from alerts.notify import Senders
from alerts.store import RuleStage
from api.app import ApiRunner, create_app
from homeward.config import Settings
from homeward.heap import settle_after_start
from ingest.http_source import HttpSource
from ingest.membership import Membership
from ingest.mqtt_source import Inbound, MqttSource
from ingest.pipeline import Handler, IngestPipeline
from ingest.quarantine_gate import QuarantineGate
from ingest.writer import BatchStore
from service.metrics import Metrics

log = logging.getLogger(__name__)
POOL_MAX_SIZE = 10  # the HTTP API's requests and the timers share these connections


class HomewardService:
    def __init__(
        self,
        settings: Settings,
        *,
        handlers: tuple[Handler, ...] = (),
        rules: bool = True,
        own_process: bool = False,
    ) -> None:
        """``own_process``: the service is what this process is for, so after warm-up it
        may tune the process-wide cycle collector (see homeward.heap)."""
        self.settings = settings
        self.own_process = own_process
        self.rules = RuleStage(late_after_s=settings.late_after_s) if rules else None
        self.store = BatchStore(
            settings.dsn,
            statement_timeout_ms=settings.statement_timeout_ms,
            stage=self.rules,
            gate=QuarantineGate(settings.quarantine_per_minute, settings.quarantine_keep_bytes),
        )
        self.source = MqttSource(
            settings,
            self._on_message,
            extra_subscriptions=(settings.device_topic("+", "status"),),
            on_connected=self._on_connected,
        )
        self.pipeline = IngestPipeline(
            settings,
            self.store,
            self._ack,
            handlers=handlers,
            pause=self.source.pause,
            resume=self.source.resume,
        )
        self.timers: Timers | None = None
        self.membership: Membership | None = None
        self.http_port: int | None = None
        self.warmed_patients = 0
        self.warm_s = 0.0

        self.metrics = Metrics(self.status)
        self.pipeline.on_batch = self.metrics.observe_batch
        self.http_ingest = HttpSource(
            settings, self.pipeline.submit, lambda: self.pipeline.accepting
        )

    def _on_message(self, inbound: Any) -> None:
        self.pipeline.submit(inbound)

    def _on_connected(self, generation: int) -> None:
        self.pipeline.on_new_connection(generation)

    def problems(self) -> list[str]:
        """The parts that do not keep their promise now, each named (``/health``)."""
        found = self.timers.problems() if self.timers else {}
        problems = [f"timer {name}: {problem}" for name, problem in sorted(found.items())]
        progress = self.pipeline.progress_now()
        if progress.stalled:
            problems.append(
                f"ingest: stalled, {progress.waiting} messages waiting for "
                f"{progress.waiting_for_s:.0f} s with no commit"
            )
        if self.membership is not None:
            problems += [
                f"share group: worker {s['client_id']} ({s['state']}) silent for "
                f"{s['silent_s']:.0f} s, its session not reclaimed"
                for s in self.membership.stats.stranded
            ]
        return problems

    def _quarantine_status(self) -> dict[str, Any]:
        gate = self.store.gate
        return {
            "rows_kept": gate.stats.kept,
            "rate_limited": gate.stats.rate_limited,  # counted, not kept as rows of their own
            "rate_limited_by_device": gate.stats.top(),
            "per_minute": gate.per_minute,
            "keep_bytes": gate.keep_bytes,
        }

    def _ack(self, messages: list[Inbound]) -> int:
        """After a COMMIT: answer the posted messages, PUBACK the broker's, each on the
        connection it came on — ours, or a reclaimed peer's session (ingest/membership.py)."""
        broker = self.http_ingest.acknowledge(messages)
        if self.membership is None:
            return self.source.ack(broker)
        return self.membership.ack(broker)

    def status(self) -> dict[str, Any]:
        return {
            "problems": self.problems(),
            "timers": self.timers.status() if self.timers else {},
            "mqtt": dataclasses.asdict(self.source.stats),
            "ingest": {
                **dataclasses.asdict(self.pipeline.stats),
                "pending": self.pipeline.pending,
                "progress": dataclasses.asdict(self.pipeline.progress_now()),
                "quarantine": self._quarantine_status(),
            },
            "share_group": self.membership.status() if self.membership else None,
            "rules": {
                "enabled": self.rules is not None,
                "patients_in_memory": len(self.rules.engine.patients) if self.rules else 0,
                "alerts_written": self.rules.alerts_written if self.rules else 0,
                "warmed_patients": self.warmed_patients,
                "warm_s": round(self.warm_s, 3),
                "errors": self.store.stage_errors,
                "failed_patients": self.rules.failures if self.rules else 0,
                "last_failure": self.rules.last_failure if self.rules else None,
            },
        }

    async def _warm(self, pool: AsyncConnectionPool) -> None:
        """Load the rule engine's patients before subscribing (see RuleStage.warm). A
        database that is down now only means patients load on their first reading."""
        if self.rules is None:
            return
        began = time.monotonic()
        try:
            async with pool.connection(timeout=10) as conn:
                self.warmed_patients = await self.rules.warm(conn, datetime.now(UTC))
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("rule engine not warmed (patients load on first reading): %s", exc)
            return
        self.warm_s = time.monotonic() - began
        log.info("rule engine warmed: %d patients in %.1f s", self.warmed_patients, self.warm_s)

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
        s = self.settings
        pool = AsyncConnectionPool(s.dsn, min_size=1, max_size=POOL_MAX_SIZE, open=False)
        await pool.open()
        self.timers = Timers(
            pool,
            adherence_interval_s=s.adherence_interval_s if self.rules else 0,
            escalation_tick_s=s.escalation_tick_s,
            senders=Senders(s.smtp_url, s.mail_from, publish_feedback=self.source.publish_feedback),
            stall_s=s.timer_stall_s,
            rollup_refresh_s=s.rollup_refresh_s,
        )
        self.timers.start()
        runner = ApiRunner(
            create_app(
                pool,
                self.status,
                ingest=self.http_ingest,
                device_posts_per_minute=s.device_posts_per_minute,
                metrics=lambda: self.metrics.render(pool),
                observe=self.metrics.observe_request,
            ),
            access_log=None,
        )
        await runner.setup()
        site = web.TCPSite(runner, s.http_host, s.http_port)
        await site.start()
        server = site._server  # the bound port, when 0 asked the OS for a free one
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else s.http_port
        log.info("HTTP on http://%s:%s/health", s.http_host, self.http_port)
        await self._warm(pool)
        self.membership = Membership(
            s,
            pool,
            self.source,
            self.pipeline.submit,
            lambda: self.pipeline.pending,
            self.pipeline.on_new_connection,
        )
        if self.own_process:
            settle_after_start()
        tasks = {
            asyncio.create_task(self.source.run(), name="mqtt-source"),
            asyncio.create_task(self.pipeline.run(), name="ingest-writer"),
        }
        membership = asyncio.create_task(self.membership.run(), name="share-group")
        tasks.add(membership)
        stopper = asyncio.create_task(stop.wait(), name="stop-signal")
        if ready is not None:
            ready.set()
        try:
            done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stopper}:
                exc = task.exception()
                raise RuntimeError(f"background task {task.get_name()} stopped") from exc
        finally:
            stopper.cancel()
            # No more heartbeats (one in flight would mark us active again), then hand our
            # share back when another worker runs (else the broker keeps the group's
            # readings in our session); what was queued for us is stored first.
            membership.cancel()
            await asyncio.gather(membership, return_exceptions=True)
            try:
                await self.membership.leave()
            except Exception:  # the session stays a member: nothing is lost, only delayed
                log.exception("leaving the share group failed")
            await self.pipeline.stop()
            await self.source.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.store.close()
            await self.timers.stop(timeout_s=2)
            await runner.cleanup()
            await pool.close()
