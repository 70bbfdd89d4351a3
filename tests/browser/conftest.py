"""Browser tests: Debian's chromium driven by Playwright for Python (Playwright's own
browser download cannot work here). Skipped, with the reason, when chromium is absent."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from browser_support import ARGS, CHROMIUM


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            if not CHROMIUM.exists() and shutil.which("chromium") is None:
                item.add_marker(
                    pytest.mark.skip(
                        reason="Debian's chromium is not installed (make deps installs it)"
                    )
                )


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
            args=ARGS,
            headless=True,
        )
        try:
            yield browser
        finally:
            await browser.close()
