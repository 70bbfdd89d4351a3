"""Helpers for the web app's tests: an organisation with passwords, a browser-like HTTP
client (cookies kept for 127.0.0.1), signing in through the real form."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import psycopg

from alerts import escalation_store
from alerts.teams import load_org_file
from devices.registry import add_device, add_patient
from web.store import set_password

EXAMPLE = (Path(__file__).parents[1] / "deploy" / "teams.example.yaml").read_text()
PASSWORD = "correct horse battery"
NHS = "9434765919"  # a Deal patient
OTHER_NHS = "9434765870"  # a Dover patient
STAFF = ("deal.mn1", "deal.gp1", "deal.sw1", "dover.mn1")
_HIDDEN = re.compile(r'<input type="hidden" name="(?P<name>[a-z_]+)" value="(?P<value>[^"]*)">')


def seed(db_url: str) -> None:
    """The example organisation, a patient in Deal with a blood-pressure cuff, one in
    Dover, and a password for each staff member in STAFF and both patients."""
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        escalation_store.load_organisation(conn, load_org_file(EXAMPLE), EXAMPLE)
        add_patient(
            conn, nhs_number=NHS, name="Web Patient", team="deal", conditions=["hypertension"]
        )
        add_patient(
            conn, nhs_number=OTHER_NHS, name="Other Patient", team="dover", conditions=["copd"]
        )
        add_device(conn, "bp-web", patient_nhs_number=NHS)
        conn.commit()
        for staff_id in STAFF:
            set_password(conn, now=now, password=PASSWORD, staff_id=staff_id)
        for number in (NHS, OTHER_NHS):
            set_password(conn, now=now, password=PASSWORD, nhs_number=number)


def browser() -> aiohttp.ClientSession:
    """Keeps cookies for an IP address (aiohttp's default jar refuses them) and does not
    follow redirects, so tests see each 303."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def hidden_fields(html: str) -> dict[str, str]:
    return {m["name"]: m["value"] for m in _HIDDEN.finditer(html)}


async def sign_in(
    http: aiohttp.ClientSession, base: str, username: str, password: str = PASSWORD
) -> aiohttp.ClientResponse:
    async with http.get(f"{base}/sign-in") as r:
        fields = hidden_fields(await r.text())
    response = await http.post(
        f"{base}/sign-in",
        data={**fields, "username": username, "password": password},
        allow_redirects=False,
    )
    await response.read()
    return response


async def csrf_of(http: aiohttp.ClientSession, base: str, page: str = "/queue") -> str:
    async with http.get(f"{base}{page}", allow_redirects=False) as r:
        assert r.status == 200, r.status
        return hidden_fields(await r.text())["csrf_token"]
