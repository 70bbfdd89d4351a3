"""Resolving where the database and broker are: configured, or embedded defaults."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from homeward.config import Settings
from tools.embedded.mosquitto import EmbeddedMosquitto
from tools.embedded.postgres import EmbeddedPostgres

log = logging.getLogger(__name__)


def embedded_postgres(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.state_dir / "pgdata", settings.embedded_pg_port)


@dataclass
class Services:
    """The settings with both URLs filled in, and what we started to get them."""

    settings: Settings
    started: list[str] = field(default_factory=list)


@contextlib.contextmanager
def services(settings: Settings, *, broker: bool = True) -> Iterator[Services]:
    """Fill in missing URLs with embedded services; stop only what this call started."""
    updates: dict[str, str] = {}
    started: list[str] = []
    pg: EmbeddedPostgres | None = None
    mosquitto: EmbeddedMosquitto | None = None
    try:
        if settings.database_url is None:
            pg = embedded_postgres(settings)
            updates["database_url"] = pg.start()  # a running one (e.g. the demo's) is reused
            if pg.started_here:
                log.info("started embedded PostgreSQL in %s", pg.data_dir)
                started.append("postgresql")
        if broker and settings.mqtt_url is None:
            mosquitto = EmbeddedMosquitto(
                settings.state_dir / "mosquitto", settings.embedded_mqtt_port
            )
            log.info("starting embedded Mosquitto on port %d", settings.embedded_mqtt_port)
            updates["mqtt_url"] = mosquitto.start()
            started.append("mosquitto")
        yield Services(settings.model_copy(update=updates), started)
    finally:
        if mosquitto is not None:
            mosquitto.stop()
        if pg is not None and pg.started_here:
            pg.stop()  # only what this call started: a running demo's server is left alone
