"""`homeward demo`'s web sign-ins: printed, written to demo.json for scripts, and they
sign in (a nurse of the patient's team, a GP of it, the patient)."""

from __future__ import annotations

import json
from pathlib import Path

from commands.demo_cmd import demo_web_access, register
from support import make_settings, purge_session, running_service
from tools.simulator.fleet import generate_fleet
from web_support import browser, sign_in


async def test_the_demo_writes_sign_ins_that_work(
    db_url: str, broker_url: str, tmp_path: Path
) -> None:
    fleet = generate_fleet(3, seed=1, wearables=False)
    register(db_url, fleet)
    settings = make_settings(db_url, broker_url)
    try:
        async with running_service(settings) as service:
            base = f"http://127.0.0.1:{service.http_port}"
            printed = demo_web_access(db_url, fleet[0], base, broker_url, tmp_path)
            doc = json.loads((tmp_path / "demo.json").read_text())
            assert doc["web"] == base
            assert doc["mqtt"] == broker_url
            assert doc["example_device"] in {d.device_id for d in fleet[0].devices}
            assert set(doc["users"]) == {"nurse", "clinician", "patient"}
            assert doc["users"]["patient"]["username"] == fleet[0].nhs_number
            assert doc["users"]["nurse"]["password"] in printed
            homes = {}
            for key, user in doc["users"].items():
                async with browser() as http:
                    r = await sign_in(http, base, user["username"], user["password"])
                    assert r.status == 303, key
                    homes[key] = r.headers["Location"]
    finally:
        purge_session(settings)
    assert homes == {"nurse": "/queue", "clinician": "/queue", "patient": "/my-readings"}
    assert (tmp_path / "demo.json").stat().st_mode & 0o077 == 0
