"""Embedded services: a command reuses a running embedded database and leaves it running,
and starts (then stops) one only when none runs."""

from __future__ import annotations

from pathlib import Path

from homeward.config import Settings
from tools.embedded.mosquitto import free_port
from tools.embedded.postgres import EmbeddedPostgres
from tools.embedded.services import services


def test_a_command_leaves_a_running_embedded_database_alone(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(_env_file=None, state_dir=tmp_path / "state", embedded_pg_port=port)
    demo = EmbeddedPostgres(tmp_path / "state" / "pgdata", port)
    demo.start()
    try:
        with services(settings, broker=False) as svc:  # e.g. `homeward quarantine list`
            assert svc.started == []
            assert svc.settings.database_url == demo.url
        assert demo.running
    finally:
        demo.stop("immediate")


def test_a_command_starts_and_stops_the_embedded_database_when_none_runs(
    tmp_path: Path,
) -> None:
    settings = Settings(_env_file=None, state_dir=tmp_path / "state", embedded_pg_port=free_port())
    with services(settings, broker=False) as svc:
        assert svc.started == ["postgresql"]
    assert not EmbeddedPostgres(tmp_path / "state" / "pgdata", 1).running
