"""In a real browser: a GP opens a patient's page (charts with threshold bands),
backtests and saves a threshold; a patient sees their own view and gets the 404 page for
another patient's. Screenshots of each page go to test-artifacts/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from playwright.async_api import Browser, Page, expect

from browser_support import accessibility_problems, screenshot_path
from support import make_settings, purge_session, running_service
from web_support import NHS, OTHER_NHS, PASSWORD, seed


def _readings(db_url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT patient_id FROM patients WHERE nhs_number = %s", (NHS,)
        ).fetchone()
        assert row is not None
        for hours in range(0, 24 * 6, 8):
            value = 135.0 + (hours % 40)
            conn.execute(
                "INSERT INTO readings (time, patient_id, device_id, metric, value, received_at,"
                " msg_id) VALUES (%s, %s, 'bp-web', 'systolic_bp', %s, %s, %s)",
                (now - timedelta(hours=hours), row[0], value, now, f"h{hours}"),
            )


async def _sign_in(page: Page, base: str, username: str) -> None:
    await page.goto(f"{base}/sign-in")
    await page.get_by_label("User name").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()


async def test_a_gp_backtests_and_saves_and_a_patient_sees_only_their_own(
    db_url: str, broker_url: str, chromium: Browser
) -> None:
    seed(db_url)
    _readings(db_url)
    settings = make_settings(db_url, broker_url)
    try:
        async with running_service(settings) as service:
            base = f"http://127.0.0.1:{service.http_port}"
            gp = await (await chromium.new_context(bypass_csp=True)).new_page()
            await _sign_in(gp, base, "deal.gp1")
            await gp.goto(f"{base}/patients/{NHS}")
            await expect(gp.locator("svg.hw-chart").first).to_be_visible()
            await gp.screenshot(path=screenshot_path("patient"), full_page=True)
            assert await accessibility_problems(gp) == []
            await gp.get_by_role("link", name="Change thresholds").click()
            limit = gp.get_by_label("Systolic blood pressure amber limit in mm[Hg]")
            await limit.fill("170")
            await gp.get_by_role("button", name="Backtest these values").click()
            await expect(gp.locator("#backtest-summary")).to_contain_text("would have raised")
            await gp.screenshot(path=screenshot_path("thresholds-backtest"), full_page=True)
            assert await accessibility_problems(gp) == []
            await gp.get_by_label("Reason for the change").fill("Agreed target with the patient")
            await gp.get_by_role("button", name="Save").click()
            await expect(gp.get_by_role("status")).to_contain_text("Saved")
            assert await accessibility_problems(gp) == []
            await gp.goto(f"{base}/alerts/999999")  # the staff 404 page
            assert await accessibility_problems(gp) == []
            await gp.close()

            patient = await (await chromium.new_context(bypass_csp=True)).new_page()
            await _sign_in(patient, base, NHS)
            await expect(patient.get_by_role("heading", name="Your readings")).to_be_visible()
            await expect(patient.get_by_text("to stay under 150 mmHg")).to_have_count(0)
            await expect(
                patient.get_by_text("systolic blood pressure to stay under 170 mmHg")
            ).to_be_visible()
            await patient.screenshot(path=screenshot_path("own-view"), full_page=True)
            assert await accessibility_problems(patient) == []
            response = await patient.goto(f"{base}/patients/{OTHER_NHS}")
            assert response is not None
            assert response.status == 404
            await expect(patient.get_by_role("heading", name="Page not found")).to_be_visible()
            await patient.screenshot(path=screenshot_path("not-found"), full_page=True)
            assert await accessibility_problems(patient) == []
            await patient.close()
    finally:
        purge_session(settings)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT version, updated_by FROM patient_rules").fetchall() == [
            (1, "deal.gp1")
        ]
