"""The long-running service: MQTT source → pipeline → database, plus the HTTP API and
the web app.

Start-up runs in an order that either ends serving or ends the process with one line
saying what to fix (service/startup.py): the organisation file is read, the HTTP port
bound, the database reached and its schema checked, the MQTT client id locked
(service/identity.py); then the API serves, the rule engine is warmed, and only then is
the broker subscribed to and the timers scheduled.

Every background task is named and supervised: if one dies, the service stops with its
error instead of running half-alive. A stop is bounded by ``stop_grace_s``
(service/shutdown.py): intake stops, what is queued is stored and acknowledged while
time allows, whatever is not stored is left unacknowledged for the broker to redeliver,
and what was left is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from alerts.escalation_store import load_organisation
from alerts.jobs import Timers
from alerts.notify import Senders
from alerts.store import RuleStage
from alerts.teams import Organisation
from api.app import ApiRunner, create_app
from homeward.config import Settings
from homeward.db.connect import connect
from homeward.errors import ConfigurationError, DatabaseUnavailable, HomewardError
from homeward.heap import settle_after_start
from ingest.http_source import HttpSource
from ingest.membership import Membership
from ingest.mqtt_source import Inbound, MqttSource
from ingest.pipeline import BatchHandler, IngestPipeline
from ingest.quarantine_gate import QuarantineGate
from ingest.writer import BatchStore
from service.identity import IdentityLock
from service.metrics import Metrics
from service.shutdown import Deadline, StopReport
from service.startup import (
    StartupError,
    bind_http,
    check_schema,
    connect_database,
    instance_name,
    read_teams_file,
)
from web.app import setup as setup_web

log = logging.getLogger(__name__)
POOL_MAX_SIZE = 10  # the HTTP API's requests and the timers share these connections
_HTTP_SHUTDOWN_S = 1.0  # open HTTP requests get this long to finish once stopping


class HomewardService:
    def __init__(
        self,
        settings: Settings,
        *,
        handlers: tuple[BatchHandler, ...] = (),
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
        self.identity = IdentityLock(settings.dsn, settings.mqtt_client_id)
        self.http_port: int | None = None
        self.warmed_patients = 0
        self.warm_s = 0.0
        self.state = "starting"  # → running → stopping → stopped
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self.stop_report: StopReport | None = None
        self._deadline: Deadline | None = None  # set when stopping begins

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
        found = [] if self.state == "running" else [f"service: {self.state}"]
        if self.state == "running" and not self.identity.held:
            found.append("identity lock: lost with its database connection; retrying")
        timers = self.timers.problems() if self.timers else {}
        found += [f"timer {name}: {problem}" for name, problem in sorted(timers.items())]
        progress = self.pipeline.progress_now()
        if progress.stalled:
            found.append(
                f"ingest: stalled, {progress.waiting} messages waiting for "
                f"{progress.waiting_for_s:.0f} s with no commit"
            )
        if self.membership is not None:
            found += [
                f"share group: worker {s['client_id']} ({s['state']}) silent for "
                f"{s['silent_s']:.0f} s, its session not reclaimed"
                for s in self.membership.stats.stranded
            ]
        return found

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
            "state": self.state,
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
        """Start (or raise :class:`StartupError` / ``ConfigurationError``), serve until
        ``stop`` is set or a part fails (``RuntimeError``), then stop within the grace
        period. A stop asked for during start-up ends start-up at once."""
        async with contextlib.AsyncExitStack() as stack:
            starting = asyncio.create_task(self._start(stack), name="start-up")
            stopper = asyncio.create_task(stop.wait(), name="stop-signal")
            await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
            failure: tuple[str, BaseException] | None = None
            if starting.done():
                stopper.cancel()
                starting.result()  # a start-up step that could not succeed raises here
                self.state = "running"
                if ready is not None:
                    ready.set()
                failure = await self._supervise(stop)
            else:
                log.info("stop asked for during start-up: nothing subscribed or acknowledged")
                self.state = "stopping"
                self._deadline = Deadline(self.settings.stop_grace_s)
                starting.cancel()
                await asyncio.wait({starting}, timeout=self._deadline.step_s())
        self.state = "stopped"
        if failure is not None:
            name, exc = failure
            raise RuntimeError(f"{name} stopped: {exc!r}") from exc

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        s = self.settings
        began = time.monotonic()
        org = read_teams_file(s.teams_file) if s.teams_file else None
        listener = bind_http(s.http_host, s.http_port)
        stack.callback(listener.close)
        self.http_port = listener.getsockname()[1]
        conn = await connect_database(
            s.dsn,
            timeout_s=s.startup_timeout_s,
            application_name=instance_name(s.mqtt_client_id),
        )
        stack.push_async_callback(self._bounded, "identity lock", self.identity.release)
        try:
            await check_schema(conn)
        except BaseException:
            await conn.close()
            raise
        await self.identity.acquire(conn)
        if org is not None:
            await asyncio.to_thread(self._load_teams, *org)
        pool = AsyncConnectionPool(s.dsn, min_size=1, max_size=POOL_MAX_SIZE, open=False)
        await pool.open()
        stack.push_async_callback(self._bounded, "database pool", lambda: pool.close(timeout=1))
        app = create_app(
            pool,
            self.status,
            ingest=self.http_ingest,
            device_posts_per_minute=s.device_posts_per_minute,
            metrics=lambda: self.metrics.render(pool),
            observe=self.metrics.observe_request,
        )
        setup_web(app, s)
        runner = ApiRunner(app, access_log=None, shutdown_timeout=_HTTP_SHUTDOWN_S)
        await runner.setup()
        stack.push_async_callback(self._bounded, "HTTP server", runner.cleanup)
        await web.SockSite(runner, listener).start()
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
        stack.push_async_callback(self._stop)  # from here on, a stop is bounded
        self._spawn("ingest-writer", self.pipeline.run())
        self._spawn("mqtt-source", self.source.run())
        self._spawn("identity-lock", self.identity.keep())
        self._spawn("share-group", self.membership.run())
        await self._first_broker_attempt(deadline=began + s.startup_timeout_s)
        self.timers = Timers(
            pool,
            adherence_interval_s=s.adherence_interval_s if self.rules else 0,
            escalation_tick_s=s.escalation_tick_s,
            senders=Senders(s.smtp_url, s.mail_from, publish_feedback=self.source.publish_feedback),
            stall_s=s.timer_stall_s,
            rollup_refresh_s=s.rollup_refresh_s,
        )
        self.timers.start()
        log.info(
            "ready in %.1f s: HTTP port %s, MQTT client id %r, %s",
            time.monotonic() - began,
            self.http_port,
            s.mqtt_client_id,
            "broker connected" if self.source.stats.connected else "broker not reached yet",
        )

    def _load_teams(self, org: Organisation, text: str) -> None:
        """``homeward teams load`` at start-up (idempotent: an unchanged file loads once)."""
        path = self.settings.teams_file
        try:
            with connect(self.settings.dsn) as conn:
                version = load_organisation(conn, org, text)
        except DatabaseUnavailable as exc:
            raise StartupError(f"HOMEWARD_TEAMS_FILE {path} not loaded: {exc}") from exc
        except HomewardError as exc:
            raise ConfigurationError(f"HOMEWARD_TEAMS_FILE {path} refused: {exc}") from exc
        state = f"version {version}" if version else "unchanged (already in force)"
        log.info("organisation from %s: %s", path, state)

    async def _first_broker_attempt(self, *, deadline: float) -> None:
        """Wait for the first connection attempt's outcome. A broker that refuses us for
        good (credentials, authorisation) ends start-up; one that does not answer yet
        does not: the API and the timers serve meanwhile, /health names the broker, and
        the source keeps trying."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self.source.attempted.wait(), timeout=max(1.0, deadline - time.monotonic())
            )
        if self.source.refused is not None:
            raise StartupError(
                f"the broker refused the connection: {self.source.refused}; check the user"
                " and password in HOMEWARD_MQTT_URL and the broker's ACL"
            )
        if not self.source.stats.connected:
            log.warning(
                "broker not reached (%s); serving meanwhile and reconnecting",
                self.source.stats.last_error,
            )

    def _spawn(self, name: str, work: Awaitable[Any]) -> None:
        self._tasks[name] = asyncio.ensure_future(work)
        self._tasks[name].set_name(name)

    async def _supervise(self, stop: asyncio.Event) -> tuple[str, BaseException] | None:
        """Until a stop is asked for (None) or a part ends (its name and error)."""
        stopper = asyncio.create_task(stop.wait(), name="stop-signal")
        try:
            done, _ = await asyncio.wait(
                {stopper, *self._tasks.values()}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
        for name, task in self._tasks.items():
            if task in done:
                exc = task.exception() if not task.cancelled() else None
                log.error("%s stopped (%r): the service stops", name, exc)
                return name, exc or RuntimeError("ended")
        return None

    async def _stop(self) -> None:
        """Bounded by ``stop_grace_s`` from now, whatever state the parts are in."""
        s = self.settings
        self.state = "stopping"
        self._deadline = deadline = Deadline(s.stop_grace_s)
        log.info("stopping within %g s (HOMEWARD_STOP_GRACE_S)", s.stop_grace_s)
        # The timers' runs in progress may finish while ingest drains, until the same end.
        timers = asyncio.ensure_future(self._stop_timers(deadline.drain_s()))
        await self._leave_share_group(deadline)
        self.source.pause()  # read nothing more; what the broker sends now, it keeps
        drained = await self.pipeline.stop(deadline.drain_s())
        await asyncio.wait({timers}, timeout=deadline.drain_s() + deadline.step_s())
        interrupted: list[str] = timers.result() if timers.done() else ["timers"]
        left = self.pipeline.unacknowledged
        writer = self._tasks.get("ingest-writer")
        if writer is not None and not drained:
            writer.cancel()  # the batch in the database rolls back, unacknowledged
            await asyncio.wait({writer}, timeout=deadline.step_s())
        await self._bounded("MQTT disconnect", self.source.stop, deadline.step_s())
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks.values(), timeout=deadline.step_s())
        await self._bounded("ingest connection", self.store.close, deadline.step_s())
        self.stop_report = StopReport(
            took_s=deadline.elapsed_s(),
            stored=self.pipeline.stats.stored,
            acknowledged=self.source.stats.acked,
            unacknowledged=left,
            drained=drained,
            interrupted=tuple(interrupted),
            client_id=s.mqtt_client_id,
        )
        self.stop_report.log()

    async def _stop_timers(self, timeout_s: float) -> list[str]:
        return await self.timers.stop(timeout_s) if self.timers else []

    async def _leave_share_group(self, deadline: Deadline) -> None:
        """No more heartbeats (one in flight would mark us active again), then hand our
        share back when another worker runs (else the broker keeps the group's readings in
        our session); what was queued for us is stored first — within the drain's time."""
        membership, task = self.membership, self._tasks.pop("share-group", None)
        if membership is None or task is None:
            return
        task.cancel()
        await asyncio.wait({task}, timeout=deadline.step_s())
        try:
            await asyncio.wait_for(membership.leave(), timeout=max(deadline.drain_s(), 0.05))
        except TimeoutError:
            log.warning("leaving the share group did not finish in time; staying a member")
        except Exception:  # the session stays a member: nothing is lost, only delayed
            log.exception("leaving the share group failed")

    async def _bounded(
        self, what: str, close: Callable[[], Awaitable[Any]], timeout_s: float | None = None
    ) -> None:
        if timeout_s is None:
            timeout_s = self._deadline.step_s() if self._deadline else 1.0
        try:
            await asyncio.wait_for(close(), timeout=max(timeout_s, 0.05))
        except TimeoutError:
            log.warning("%s not closed within %.1f s; left to the process exit", what, timeout_s)
        except Exception as exc:  # closing something broken: note it and carry on
            log.warning("%s closed with an error: %s", what, exc)
