"""What the API's integration tests share: the example organisation seeded with a Deal
and a Dover patient, a token for each person the tests act as, and the API served as the
service serves it (``ApiRunner`` on a TCP port) with a clock the tests move."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
import pytest
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from alerts import escalation_store
from alerts.teams import load_org_file
from api.app import ApiRunner, create_app
from api.tokens import issue_token, revoke_token
from devices.registry import add_device, add_patient

EXAMPLE = (Path(__file__).parents[1] / "deploy" / "teams.example.yaml").read_text()
DEAL_NHS, DOVER_NHS, UNKNOWN_NHS = "9434765919", "9434765870", "4010232137"
QUIET_NHS = "9990000018"  # a Deal patient with no alert
NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = NOW.replace(minute=0, second=0) - timedelta(hours=3)  # a whole hour, 3 h ago


def _reading(
    conn: psycopg.Connection[Any], pid: int, at: datetime, metric: str, value: float
) -> None:
    conn.execute(
        "INSERT INTO readings (time, patient_id, device_id, metric, value, received_at, msg_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (at, pid, f"dev-{pid}", metric, value, at, f"m-{at.timestamp()}"),
    )


def _alert(conn: psycopg.Connection[Any], pid: int, team: str, priority: str, rule: str) -> None:
    conn.execute(
        "INSERT INTO alerts (patient_id, rule_id, kind, metric, priority, team_id,"
        " first_measured_at, latest_measured_at, message)"
        " VALUES (%s, %s, 'threshold', 'systolic_bp', %s, %s, %s, %s, %s)",
        (pid, rule, priority, team, NOW, NOW, f"{priority} {rule}"),
    )


@pytest.fixture
def seeded(db_url: str) -> dict[str, Any]:
    return seed(db_url)


def seed(db_url: str) -> dict[str, Any]:
    """The example organisation, a Deal and a Dover patient with readings and alerts,
    and a token for each person the tests act as."""
    with psycopg.connect(db_url) as conn:
        escalation_store.load_organisation(conn, load_org_file(EXAMPLE), EXAMPLE)
        deal = add_patient(conn, nhs_number=DEAL_NHS, name="Dee Deal", team="deal")
        dover = add_patient(conn, nhs_number=DOVER_NHS, name="Dov Dover", team="dover")
        add_patient(conn, nhs_number=QUIET_NHS, name="Quinn Quiet", team="deal")
        for p in (deal, dover):
            add_device(conn, f"dev-{p.patient_id}", patient_nhs_number=p.nhs_number)
        # an hour of blood pressures (systolic 120, 130, 140: mean 130) and one weight
        for minutes, systolic in ((5, 120), (25, 130), (45, 140)):
            at = HOUR + timedelta(minutes=minutes)
            _reading(conn, deal.patient_id, at, "systolic_bp", systolic)
            _reading(conn, deal.patient_id, at, "diastolic_bp", systolic - 40)
        _reading(conn, deal.patient_id, NOW - timedelta(days=2), "body_weight", 81.5)
        _reading(conn, deal.patient_id, NOW - timedelta(days=9), "body_weight", 80.0)
        _reading(conn, dover.patient_id, HOUR, "systolic_bp", 150)
        _alert(conn, deal.patient_id, "deal", "amber", "threshold:systolic_bp:high")
        _alert(conn, deal.patient_id, "deal", "red", "threshold:systolic_bp:severe")
        _alert(conn, dover.patient_id, "dover", "red", "threshold:systolic_bp:severe")
        conn.commit()
        tokens = {
            who: issue_token(conn, now=NOW, staff_id=who)[1]
            for who in ("deal.mn1", "deal.sw1", "dover.mn1", "skc-rapid-response.rr1")
        }
        tokens["patient"] = issue_token(conn, now=NOW, nhs_number=DEAL_NHS)[1]
        tokens["expired"] = issue_token(
            conn, now=NOW - timedelta(days=2), staff_id="deal.mn1", days=1
        )[1]
        revoked_id, tokens["revoked"] = issue_token(conn, now=NOW, staff_id="deal.mn1")
        revoke_token(conn, revoked_id, now=NOW)
    return {"tokens": tokens, "deal": deal.patient_id, "dover": dover.patient_id}


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str, tokens: dict[str, str]) -> None:
        self.session, self.base, self.tokens = session, base, tokens

    async def get(
        self, path: str, who: str | None = None, **params: Any
    ) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        query = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
        async with self.session.get(f"{self.base}{path}", headers=headers, params=query) as r:
            return r.status, await r.json(content_type=None), r


class FrozenClock:
    """The API's clock, moved only by a test (the anonymous audit limit's windows)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def api(db_url: str, seeded: dict[str, Any], clock: FrozenClock) -> AsyncIterator[Api]:
    """The API served as the service serves it (``ApiRunner`` on a TCP port)."""
    pool = AsyncConnectionPool(db_url, min_size=1, max_size=4, open=False)
    await pool.open()
    runner = ApiRunner(create_app(pool, lambda: {}, clock=clock), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(session, f"http://{host}:{port}/api/v1/", seeded["tokens"])
    finally:
        await runner.cleanup()
        await pool.close()


def audit_rows(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT actor, action, patient_id, allowed, status, detail FROM audit_log"
            " ORDER BY audit_id"
        ).fetchall()


def alert_id(db_url: str, patient_id: int, priority: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT alert_id FROM alerts WHERE patient_id = %s AND priority = %s",
            (patient_id, priority),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def post(
    api: Api, path: str, who: str, body: Any = None, *, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {api.tokens[who]}"}
    data: Any = raw if raw is not None else (None if body is None else orjson.dumps(body))
    if raw is not None and len(raw) > 1024 * 1024:
        data = io.BytesIO(raw)  # aiohttp warns of large bytes bodies
    async with api.session.post(f"{api.base}{path}", headers=headers, data=data) as r:
        return r.status, await r.json(content_type=None)
