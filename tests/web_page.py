"""Drive the demo page in Debian's headless Chromium (shared by the browser test and bench)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]



def browser_test_marks(timeout_s: int) -> list[pytest.MarkDecorator]:
    """The marks of a module of browser end-to-end tests (skipped without Debian's Chromium)."""
    return [
        pytest.mark.browser,
        pytest.mark.e2e,
        pytest.mark.timeout(timeout_s),
        pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is absent"),
    ]


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless; never a downloaded browser."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def open_demo(browser: Browser, url: str, errors: list[str]) -> Page:
    """Open the page, join the room, and wait until the avatar's audio track plays."""
    page = await browser.new_page(viewport={"width": 1100, "height": 640})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url + ("&" if "?" in url else "?") + "autojoin=1")
    await page.wait_for_function(
        "() => window.avatarRelayDebug.relayIdentity !== null || window.avatarRelayDebug.error",
        timeout=60_000,
    )
    error = await page.evaluate("window.avatarRelayDebug.error")
    if error:
        raise AssertionError(f"the page failed to join: {error}")
    return page
