"""What the browser tests share: Debian's chromium and its flags, screenshots of each
page in test-artifacts/ (not committed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parents[1] / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def screenshot_path(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / f"{name}.png")


AXE = Path(__file__).parents[1] / "node_modules" / "axe-core" / "axe.min.js"


async def accessibility_problems(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page (installed by `npm ci`
    from package-lock.json; injected by the test, so the context bypasses the CSP)."""
    if not AXE.exists():
        raise AssertionError(f"axe-core is not installed at {AXE}: run `make install`")
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ': ' + v.help + ' (' + v.nodes.length + ')')"
    )
    return list(result)
