"""Prometheus metrics on ``/metrics`` (the official ``prometheus-client``).

Two sources, read at each scrape: the running process (what its MQTT source, ingest
pipeline, rule stage and timers counted since it started — per worker) and the
database (alerts, notifications, escalation steps and quarantine — the same for every
worker, since they are the whole system's). Batch sizes, commit times and API latencies
are histograms observed as they happen. docs/operations.md lists every metric.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from homeward.db.queries import load_queries

Q = load_queries(Path(__file__).with_name("metrics.sql"))
StatusProvider = Callable[[], dict[str, Any]]

# (status section, key, metric name, help, counter?) — what the process counted.
_PROCESS = (
    ("mqtt", "received", "homeward_mqtt_received", "messages received from the broker", True),
    ("mqtt", "acked", "homeward_mqtt_acked", "messages acknowledged to the broker", True),
    ("mqtt", "connects", "homeward_mqtt_connects", "connections made to the broker", True),
    ("mqtt", "disconnects", "homeward_mqtt_disconnects", "connections lost", True),
    ("ingest", "stored", "homeward_readings_stored", "readings stored by this worker", True),
    ("ingest", "duplicates", "homeward_readings_duplicate", "readings already stored", True),
    ("ingest", "quarantined", "homeward_messages_quarantined", "messages quarantined", True),
    ("ingest", "batches", "homeward_ingest_batches", "batches committed", True),
    ("ingest", "db_failures", "homeward_ingest_db_failures", "batch attempts that failed", True),
    ("ingest", "parser_errors", "homeward_ingest_parser_errors", "validator failures", True),
    ("ingest", "pending", "homeward_ingest_queue_depth", "messages waiting to be stored", False),
    ("rules", "errors", "homeward_rule_errors", "rule-stage failures", True),
    ("rules", "alerts_written", "homeward_rule_alerts_written", "alert writes by rules", True),
    ("rules", "patients_in_memory", "homeward_rule_patients", "patients in memory", False),
)


class Metrics(Collector):
    def __init__(self, status: StatusProvider) -> None:
        self._status = status
        self._database: dict[str, list[dict[str, Any]]] = {}
        self._database_up = False
        self.registry = CollectorRegistry(auto_describe=False)
        self.batch_messages = Histogram(
            "homeward_ingest_batch_messages",
            "messages per committed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "homeward_ingest_commit_seconds",
            "time to store and commit a batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "homeward_api_request_seconds",
            "HTTP answers by route and status",
            ("route", "status"),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.registry.register(self)

    def observe_batch(self, messages: int, seconds: float) -> None:
        self.batch_messages.observe(messages)
        self.batch_seconds.observe(seconds)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.request_seconds.labels(route, str(status)).observe(seconds)

    async def render(self, pool: AsyncConnectionPool) -> bytes:
        """Read the database's figures, then every metric in the text format."""
        try:
            async with pool.connection(timeout=2) as conn:
                self._database = await _database_figures(conn)
            self._database_up = True
        except (psycopg.Error, PoolTimeout):
            self._database_up = False  # the process's own figures are still served
        return generate_latest(self.registry)

    def collect(self) -> Iterable[Metric]:
        yield from self._process()
        yield from self._from_database()

    def _process(self) -> Iterator[Metric]:
        status = self._status()
        for section, key, name, text, counter in _PROCESS:
            value = status.get(section, {}).get(key)
            if value is None:
                continue
            family = CounterMetricFamily if counter else GaugeMetricFamily
            yield family(name, text, value=float(value))
        mqtt = status.get("mqtt", {})
        yield GaugeMetricFamily(
            "homeward_mqtt_connected",
            "1 while connected to the broker",
            value=mqtt.get("connected", 0),
        )
        last = mqtt.get("last_message_at") or 0
        yield GaugeMetricFamily(
            "homeward_mqtt_last_message_age_seconds",
            "seconds since the broker last delivered a message (broker lag when it grows)",
            value=time.time() - last if last else float("nan"),
        )
        progress = status.get("ingest", {}).get("progress", {})
        yield GaugeMetricFamily(
            "homeward_ingest_stalled",
            "1 while messages wait and no batch commits (the watchdog)",
            value=1.0 if progress.get("stalled") else 0.0,
        )
        share = status.get("share_group") or {}  # ingest/membership.py
        yield CounterMetricFamily(
            "homeward_share_reclaims",
            "sessions of stopped or crashed workers this worker drained and took out of the group",
            value=share.get("reclaims", 0),
        )
        yield CounterMetricFamily(
            "homeward_share_reclaimed_messages",
            "messages those sessions held",
            value=share.get("reclaimed_messages", 0),
        )
        yield GaugeMetricFamily(
            "homeward_share_last_reclaim_delay_seconds",
            "how long after measurement the oldest reading of the last reclaim arrived",
            value=(share.get("last_reclaim") or {}).get("max_delay_s", 0.0),
        )
        yield GaugeMetricFamily(
            "homeward_share_stranded_workers",
            "workers whose session may hold readings nobody drains, beyond the bound",
            value=len(share.get("stranded", ())),
        )
        yield GaugeMetricFamily(
            "homeward_problems",
            "parts /health names as failing",
            value=len(status.get("problems", ())),
        )
        runs = CounterMetricFamily("homeward_timer_runs", "timer runs", labels=("timer",))
        failing = GaugeMetricFamily(
            "homeward_timer_failing", "1 while /health names the timer", labels=("timer",)
        )
        age = GaugeMetricFamily(
            "homeward_timer_last_run_age_seconds",
            "seconds since a timer last started",
            labels=("timer",),
        )
        for name, timer in status.get("timers", {}).items():
            runs.add_metric([name], timer.get("runs", 0))
            failing.add_metric([name], 0.0 if timer.get("ok", True) else 1.0)
            started = timer.get("last_started_s_ago")
            age.add_metric([name], float("nan") if started is None else started)
        yield from (runs, failing, age)

    def _from_database(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "homeward_database_up",
            "1 when the last scrape read the database",
            value=self._database_up,
        )
        figures = self._database
        if not figures:
            return
        unresolved = GaugeMetricFamily(
            "homeward_alerts_unresolved", "unresolved alerts", labels=("priority", "state")
        )
        for row in figures["alerts_unresolved"]:
            unresolved.add_metric([row["priority"], row["state"]], row["n"])
        raised = CounterMetricFamily(
            "homeward_alerts_raised", "alerts raised, ever", labels=("priority",)
        )
        for row in figures["alerts_raised"]:
            raised.add_metric([row["priority"]], row["n"])
        notifications = GaugeMetricFamily(
            "homeward_notifications",
            "notifications by channel and state",
            labels=("channel", "state"),
        )
        for row in figures["notifications"]:
            for state in ("delivered", "pending", "failing"):
                notifications.add_metric([row["channel"], state], row[state])
        steps = figures["escalation_steps"][0]
        yield from (unresolved, raised, notifications)
        yield CounterMetricFamily(
            "homeward_escalation_steps_fired", "escalation steps fired", value=steps["fired"]
        )
        yield GaugeMetricFamily(
            "homeward_escalation_steps_overdue",
            "escalation steps due and not fired",
            value=steps["overdue"],
        )
        quarantine = CounterMetricFamily(
            "homeward_quarantined", "messages quarantined, each time seen", labels=("reason",)
        )
        for row in figures["quarantine_by_reason"]:
            quarantine.add_metric([row["reason"]], float(row["n"]))
        yield quarantine


async def _database_figures(conn: psycopg.AsyncConnection[Any]) -> dict[str, list[dict[str, Any]]]:
    figures = {}
    async with conn.cursor(row_factory=dict_row) as cur:
        for name in Q:
            await cur.execute(Q[name], {"now": datetime.now(UTC)})
            figures[name] = await cur.fetchall()
    return figures
