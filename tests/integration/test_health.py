"""GET /health over real HTTP: 200 with JSON when database and broker are connected."""

from __future__ import annotations

import aiohttp

from homeward.db.migrate import upgrade
from support import make_settings, purge_session, running_service
from tools.embedded.postgres import EmbeddedPostgres


async def test_health_reports_connected_services(db_url: str, broker_url: str) -> None:
    settings = make_settings(db_url, broker_url)
    try:
        async with running_service(settings) as service, aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{service.http_port}/health") as response:
                assert response.status == 200
                body = await response.json()
    finally:
        purge_session(settings)
    assert body["status"] == "ok"
    assert body["database"]["connected"] is True
    assert body["mqtt"]["connected"] is True
    assert body["ingest"]["db_ok"] is True
    assert body["notifications_failing"] == 0


async def test_health_is_503_when_the_database_is_down(
    own_postgres: EmbeddedPostgres, broker_url: str
) -> None:
    upgrade(own_postgres.url)
    settings = make_settings(own_postgres.url, broker_url)
    try:
        async with running_service(settings) as service, aiohttp.ClientSession() as http:
            own_postgres.stop("immediate")
            async with http.get(f"http://127.0.0.1:{service.http_port}/health") as response:
                assert response.status == 503
                body = await response.json()
            assert body["database"]["connected"] is False
            own_postgres.start()
    finally:
        purge_session(settings)
