"""In a real browser: a nurse signs in, sees an alert published over MQTT appear in the
queue without reloading (top of the list, red, counted in the title), acknowledges and
resolves it by keyboard alone."""

from __future__ import annotations

import psycopg
from playwright.async_api import Browser, Page, expect

from browser_support import accessibility_problems, screenshot_path
from support import Publisher, make_settings, purge_session, reading_payload, running_service
from web_support import PASSWORD, seed


async def test_the_queue_updates_live_and_works_by_keyboard(
    db_url: str, broker_url: str, chromium: Browser
) -> None:
    seed(db_url)
    # No escalation timer: its NOTIFYs would re-read the table at random moments between
    # the test's key presses (focus is kept, but a key can land during the swap).
    settings = make_settings(db_url, broker_url, escalation_tick_s=0)
    pub = Publisher(broker_url)
    try:
        async with running_service(settings) as service:
            base = f"http://127.0.0.1:{service.http_port}"
            page = await (await chromium.new_context(bypass_csp=True)).new_page()
            await page.goto(f"{base}/queue")
            await expect(page).to_have_url(f"{base}/sign-in?next=/queue")
            await page.screenshot(path=screenshot_path("sign-in"), full_page=True)
            assert await accessibility_problems(page) == []
            await page.get_by_label("User name").fill("deal.mn1")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_label("Password").press("Enter")
            await expect(page).to_have_url(f"{base}/queue")
            await expect(page.locator("#queue-empty")).to_be_visible()
            await expect(page.locator("body")).to_have_attribute("data-live", "open")

            payload = reading_payload(
                "bp-live", [("systolic_bp", 188, "mm[Hg]"), ("diastolic_bp", 97, "mm[Hg]")]
            )
            pub.publish(settings.readings_topic("bp-web"), payload)

            row = page.locator("tr[data-priority='red']").first
            await expect(row).to_be_visible(timeout=15_000)  # no reload: the live stream
            await expect(row).to_contain_text("Web Patient")
            await expect(row).to_contain_text("188")
            alert_id = await row.get_attribute("data-alert")
            await expect(page).to_have_title("(1 red) Queue for deal – Homeward")
            await expect(page.locator("#live-status")).to_contain_text("New red alert")
            await page.screenshot(path=screenshot_path("queue-live"), full_page=True)
            assert await accessibility_problems(page) == []

            await _acknowledge_and_resolve_by_keyboard(page, alert_id)
            await page.close()
    finally:
        pub.close()
        purge_session(settings)
    with psycopg.connect(db_url) as conn:
        state = conn.execute(
            "SELECT state, outcome, acknowledged_by FROM alerts WHERE alert_id = %s",
            (int(alert_id or 0),),
        ).fetchall()
        audited = conn.execute(
            "SELECT DISTINCT action FROM audit_log WHERE actor = 'staff:deal.mn1'"
        ).fetchall()
    assert state == [("resolved", "advice_given", "deal.mn1")]
    actions = {a for (a,) in audited}
    assert {
        "web_sign_in",
        "read_queue",
        "stream_queue",
        "acknowledge_alert",
        "resolve_alert",
    } <= actions


async def _acknowledge_and_resolve_by_keyboard(page: Page, alert_id: str | None) -> None:
    row = page.locator(f"#alert-{alert_id}")
    # Keyboard alone: focus moves by Tab from the row's link to the alert's page.
    link = page.locator(f"#alert-link-{alert_id}")
    await link.focus()
    await page.keyboard.press("Tab")  # → Acknowledge
    await expect(page.locator(":focus")).to_have_text("Acknowledge")
    await page.keyboard.press("Enter")
    await expect(page.locator(".nhsuk-inset-text")).to_contain_text("Done: ")
    assert "/queue?done=" in page.url
    await expect(row).to_contain_text("by deal.mn1")
    await expect(page.locator("#live-status")).to_contain_text("Live: updated")
    await link.focus()
    await page.keyboard.press("Tab")  # → Resolve (the acknowledge button is gone)
    await page.keyboard.press("Enter")  # opens it
    await page.keyboard.press("Tab")  # → outcome
    await page.keyboard.press("ArrowDown")  # no_action_needed → advice_given
    await page.keyboard.press("Tab")  # → note
    await page.keyboard.type("Rang the patient: repeat reading in an hour")
    await page.keyboard.press("Enter")
    await expect(page.locator(".nhsuk-inset-text")).to_contain_text("Done: resolved")
    await expect(page.locator(f"#alert-{alert_id}")).to_have_count(0)
    await page.screenshot(path=screenshot_path("queue-resolved"), full_page=True)
