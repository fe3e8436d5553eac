"""Issue 7: the web client in real headless Chromium against the demo stack.

The page joins, the avatar speaks typed text, the audio really plays (a WebAudio analyser on
the played track sees energy), the mouth opens while it speaks and closes in the silence
after, and an interrupt stops both. Page state is read from ``window.avatarRelayDebug``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
from conftest import LOG_DIR
from PIL import Image
from playwright.async_api import Page
from web_page import browser_test_marks, chromium, open_demo

from agent.demo import DemoStack

pytestmark = browser_test_marks(240)

SPEAKING_ENERGY = 0.01
"""RMS of the played track while speech plays (espeak speech is ~0.05-0.2)."""
SILENT_ENERGY = 0.003
"""RMS of the played track in silence (measured ~1e-5)."""
OPEN_JAW = 0.25
CLOSED_JAW = 0.08
LONG_TEXT = (
    "This is a long sentence for the interrupt test. It keeps going for quite a while, "
    "talking about the weather, the sea, the mountains and the stars, so that there is "
    "plenty of time to interrupt it while the avatar is still speaking."
)


@pytest.fixture(scope="module")
async def demo() -> AsyncIterator[DemoStack]:
    stack = DemoStack(port=0, room=f"browser-{uuid.uuid4().hex[:8]}", log_dir=LOG_DIR)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.aclose()


@pytest.fixture
async def page(demo: DemoStack) -> AsyncIterator[Page]:
    errors: list[str] = []
    async with chromium() as browser:
        page = await open_demo(browser, demo.url, errors)
        yield page
        await page.close()
    assert not errors, f"uncaught errors in the page: {errors}"


async def wait_for(page: Page, condition: str, timeout_s: float) -> None:
    """Wait until ``condition`` (an expression over ``d`` = avatarRelayDebug) holds."""
    await page.wait_for_function(
        f"() => {{ const d = window.avatarRelayDebug; return {condition}; }}",
        timeout=timeout_s * 1000,
    )


async def debug(page: Page, expr: str) -> object:
    return await page.evaluate(f"(() => {{ const d = window.avatarRelayDebug; return {expr}; }})()")


async def peak_over(page: Page, expr: str, seconds: float) -> float:
    """Largest value of ``expr`` over every animation frame of the next ``seconds``."""
    value = await page.evaluate(
        """([expr, ms]) => new Promise((resolve) => {
          const read = new Function('d', `return ${expr};`);
          const end = performance.now() + ms;
          let peak = -Infinity;
          const tick = () => {
            peak = Math.max(peak, read(window.avatarRelayDebug));
            if (performance.now() >= end) resolve(peak); else requestAnimationFrame(tick);
          };
          tick();
        })""",
        [expr, seconds * 1000],
    )
    return float(value)


def assert_not_blank(png_path: str) -> None:
    pixels = np.asarray(Image.open(png_path).convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20, f"{png_path} looks blank (pixel std {pixels.std():.1f})"


async def test_avatar_speaks_typed_text_in_sync(page: Page) -> None:
    await page.fill("#text", "Hello! I am the avatar relay. My mouth moves when I talk to you.")
    await page.click("#speak")
    await wait_for(page, "d.conversationId !== null && d.mode === 'animated'", 30)
    conversation_id = await debug(page, "d.conversationId")
    await wait_for(page, f"d.audioEnergy > {SPEAKING_ENERGY}", 10)
    await wait_for(page, f"d.jawOpen > {OPEN_JAW}", 10)

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    shot = str(LOG_DIR / "web-speaking.png")
    await page.screenshot(path=shot)
    assert_not_blank(shot)
    overlay = await page.inner_text("#overlay")
    assert str(conversation_id) in overlay and "animated" in overlay

    # The utterance ends by itself: audio falls silent and the mouth closes.
    await wait_for(page, "d.conversationId === null && d.mode === 'idle'", 30)
    await wait_for(page, f"d.audioEnergy < {SILENT_ENERGY} && d.jawOpen < {CLOSED_JAW}", 5)
    assert await debug(page, "d.protocolErrors") == 0
    assert await debug(page, "d.offsetMs > 0 && d.offsetMs < 500") is True


async def test_interrupt_stops_audio_and_mouth(page: Page) -> None:
    await page.fill("#text", LONG_TEXT)
    await page.click("#speak")
    await wait_for(page, f"d.audioEnergy > {SPEAKING_ENERGY} && d.jawOpen > {OPEN_JAW}", 30)
    conversation_id = await debug(page, "d.conversationId")
    assert conversation_id is not None

    await page.click("#interrupt")
    await wait_for(page, f"d.lastInterrupted === {conversation_id!r}", 5)
    assert await debug(page, "d.conversationId") is None
    # What is still in the jitter buffer plays out within a few hundred ms, then silence.
    await wait_for(page, f"d.audioEnergy < {SILENT_ENERGY} && d.jawOpen < {CLOSED_JAW}", 5)
    assert await peak_over(page, "d.audioEnergy", 1.0) < SILENT_ENERGY, "audio resumed"
    assert await peak_over(page, "d.jawOpen", 0.5) < CLOSED_JAW, "the mouth moved again"
    overlay = await page.inner_text("#overlay")
    assert str(conversation_id) in overlay.split("interrupted", 1)[1]
    shot = str(LOG_DIR / "web-interrupted.png")
    await page.screenshot(path=shot)
    assert_not_blank(shot)
