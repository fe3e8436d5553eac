"""The web receiver follows a relay that fell behind (issue 11, re-anchoring), in Chromium.

The same fault as ``test_sync_stress_e2e.py`` with the demo page as the receiver: the process
serving the speaking room is stopped for 300 ms, so its audio queue runs dry and its audio and
frames leave later from then on. The page (``AvatarPlayer``'s ``ConversationClock``) must be
back on the voice within 1 s: every marker frame whose burst is heard later than that is shown
no more than 20 ms early (the bug: 110-350 ms early for the rest of the conversation).

Measured when this test was written (4 runs): the page does re-anchor (it is within 20 ms
from 1.5-2 s after the stall on), but at 1.0-1.2 s it still shows the picture 42-66 ms early,
and the last 1-2 markers of the conversation come 54-133 ms late. The Python receiver meets the
bound in the same fault. Marked xfail until the web clock is mended; it reports XPASS then.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import LOG_DIR
from failover_helpers import wait_job_started
from playwright.async_api import Page
from web_page import browser_test_marks, chromium, open_demo

from agent.demo import DemoStack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from browser_sync import clapperboard_wav  # noqa: E402

pytestmark = browser_test_marks(240)
SECONDS = 8.32
STALL_S = 0.3
REANCHOR_WITHIN_S = 1.0


@pytest.fixture
async def page_on_demo() -> AsyncIterator[tuple[DemoStack, Page]]:
    errors: list[str] = []
    stack = DemoStack(port=0, room=f"reanchor-{uuid.uuid4().hex[:8]}", log_dir=LOG_DIR)
    await stack.start()
    try:
        async with chromium() as browser:
            page = await open_demo(browser, stack.url, errors)
            yield stack, page
            await page.close()
    finally:
        await stack.aclose()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.mark.xfail(
    reason="known gap (issue 11): the page is back on the voice only 1.5-2 s after the stall "
    "(42-66 ms early at 1.0-1.2 s; 4 of 4 runs) and the last 1-2 markers of the stalled "
    "conversation are 54-133 ms late",
    strict=False,
)
async def test_page_reanchors_after_the_relay_fell_behind(
    page_on_demo: tuple[DemoStack, Page],
) -> None:
    stack, page = page_on_demo
    assert stack.worker is not None
    _, pid = await wait_job_started([stack.worker], stack.room, [0])
    await page.evaluate("avatarRelay.setMotionSource('clapperboard')")
    await page.evaluate("avatarRelay.resetSync()")
    wav64 = base64.b64encode(clapperboard_wav(SECONDS)).decode()
    await page.evaluate("(b64) => avatarRelay.sendWavBase64(b64)", wav64)
    await page.wait_for_function("() => avatarRelay.syncPairs().length >= 3", timeout=30_000)
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(STALL_S)  # the fault's duration, not a wait for an event
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed_ms = float(await page.evaluate("performance.now()"))
    await page.wait_for_function(
        "() => avatarRelayDebug.conversationId === null", timeout=(SECONDS + 30) * 1000
    )
    pairs: list[list[float]] = await page.evaluate("avatarRelay.syncPairs()")
    trace = [(round((heard - resumed_ms) / 1000, 2), round(off)) for heard, off in pairs]
    after = [(t, off) for t, off in trace if t > REANCHOR_WITHIN_S]
    assert len(after) >= 5, f"too few bursts after the stall: {trace}"
    for t, off in after:
        # Not early by more than 20 ms; late within what viewers cannot detect (ITU-R BT.1359).
        assert -20 <= off <= 45, f"{t:.2f}s after the stall: {off:+d} ms; (s, ms): {trace}"
