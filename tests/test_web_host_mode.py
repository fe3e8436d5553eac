"""Issue 15 in real Chromium: HostModeBridge and the web client's playback of audio sent as data.

A real livekit-server and worker (the demo stack) with ``audio.transport = "data"`` and the
Spatius motion source, which talks to the local Spatius stand-in on 127.0.0.1. A test page
(web/test-pages/host_mode_page.js, bundled here with esbuild) joins the room and drives a
Host Mode controller with HostModeBridge: the recording controller that follows the vendor's
contract (frames for another id dropped, motion after the end dropped, empty frames =
audio-only), or our own HostModeController.

The demo page plays audio sent as data (``data``, and ``both`` with ``?audio=data``), and the
clapperboard measures sync: each tone-burst onset heard (AudioWorklet on the played audio)
against the marker frame drawn for it.
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import uuid
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import numpy as np
import pytest
from conftest import LOG_DIR
from playwright.async_api import Browser, Page
from spatius.proto.generated import message_pb2 as _message_pb2
from spatius_server import LocalSpatiusServer
from web_page import browser_test_marks, chromium, open_demo

from agent.demo import WEB_DIST, DemoStack
from agent.devserver import PROJECT_ROOT
from avatar_relay.motion import clapperboard_audio

WEB: Final = PROJECT_ROOT / "web"
ESBUILD: Final = WEB / "node_modules" / ".bin" / "esbuild"
pb: Any = _message_pb2
"""The vendor SDK's generated protobuf module (untyped)."""
RATE: Final = 16000
"""The vendor SDK's default sample rate; the bridge is configured for it."""

pytestmark = [
    *browser_test_marks(300),
    pytest.mark.skipif(not ESBUILD.exists(), reason="web/node_modules is absent (npm ci)"),
    pytest.mark.skipif(not (WEB_DIST / "index.html").exists(), reason="web/dist not built"),
]

SHORT_TEXT = "Hello there. This is the host mode bridge speaking."
LONG_TEXT = (
    "This is a long sentence for the interrupt test. It keeps going for quite a while, "
    "talking about the weather, the sea, the mountains and the stars, so that there is "
    "plenty of time to interrupt it while the avatar is still speaking."
)


def site_dir(tmp: Path) -> Path:
    """The demo page plus the bridge's test page, bundled with the package as an app would."""
    shutil.copytree(WEB_DIST, tmp, dirs_exist_ok=True)
    subprocess.run(
        [
            str(ESBUILD),
            "test-pages/host_mode_page.js",
            "--bundle",
            "--format=esm",
            f"--outfile={tmp / 'host_mode_page.js'}",
            "--log-level=warning",
        ],
        cwd=WEB,
        check=True,
        timeout=60,
    )
    shutil.copy(WEB / "test-pages" / "host_mode.html", tmp / "host_mode.html")
    return tmp


@pytest.fixture(scope="module")
async def spatius() -> AsyncIterator[LocalSpatiusServer]:
    server = LocalSpatiusServer()
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


def spatius_env(server: LocalSpatiusServer) -> dict[str, str]:
    return {
        "AVATAR_RELAY_MOTION__SOURCE": "spatius",
        "SPATIUS_API_KEY": server.api_key,
        "SPATIUS_APP_ID": server.app_id,
        "SPATIUS_AVATAR_ID": server.avatar_id,
        "SPATIUS_CONSOLE_ENDPOINT": server.console_url,
        "SPATIUS_INGRESS_ENDPOINT": server.ingress_url,
    }


@pytest.fixture(scope="module")
async def data_stack(
    spatius: LocalSpatiusServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DemoStack]:
    env = {
        **spatius_env(spatius),
        "AVATAR_RELAY_AUDIO__TRANSPORT": "data",
        "AVATAR_RELAY_AUDIO__SAMPLE_RATE": str(RATE),
    }
    web_dir = site_dir(tmp_path_factory.mktemp("hostmode-site"))
    stack = DemoStack(
        port=0,
        room=f"hostmode-{uuid.uuid4().hex[:8]}",
        log_dir=LOG_DIR / "hostmode-data",
        web_dir=web_dir,
        worker_env=env,
    )
    await stack.start()
    try:
        yield stack
    finally:
        await stack.aclose()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


async def open_bridge_page(
    browser: Browser, stack: DemoStack, query: str, errors: list[str]
) -> Page:
    page = await browser.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{stack.url}host_mode.html?{query}")
    await page.wait_for_function("() => window.hostModeTest !== undefined", timeout=20_000)
    await page.evaluate("hostModeTest.join()")
    await page.wait_for_function("() => hostModeTest.relayPresent()", timeout=60_000)
    return page


async def state(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("hostModeTest.state()")
    return result


async def wait_state(page: Page, condition: str, timeout_s: float) -> dict[str, Any]:
    """Wait until ``condition`` (over ``s`` = hostModeTest.state()) holds; return the state."""
    await page.wait_for_function(
        f"() => {{ const s = hostModeTest.state(); return {condition}; }}", timeout=timeout_s * 1000
    )
    return await state(page)


def parse_vendor_frame(payload: list[int]) -> Any:
    """A frame as the page's controller got it, parsed with the vendor SDK's own classes."""
    msg = pb.Message()
    msg.ParseFromString(bytes(payload))
    return msg


# Runs before the module's stack starts: two stacks at once overload a 2-core machine.
async def test_web_client_plays_audio_sent_both_ways_from_data(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser
) -> None:
    stack = DemoStack(
        port=0,
        room=f"both-{uuid.uuid4().hex[:8]}",
        log_dir=LOG_DIR / "hostmode-both",
        worker_env={"AVATAR_RELAY_AUDIO__TRANSPORT": "both"},
    )
    await stack.start()
    try:
        await assert_plays_data_audio_in_sync(stack, browser, "?audio=data", 24000)
    finally:
        await stack.aclose()


async def test_bridge_drives_a_contract_controller(
    data_stack: DemoStack, spatius: LocalSpatiusServer, browser: Browser
) -> None:
    errors: list[str] = []
    page = await open_bridge_page(browser, data_stack, "controller=recording", errors)

    # 1. A whole conversation: PCM to yieldAudioData, the vendor's frames unchanged with the
    # controller's own id (none dropped for a mismatch), end only after the last frame.
    await page.evaluate("(t) => hostModeTest.speak(t)", SHORT_TEXT)
    s = await wait_state(page, "s.outcomes.length >= 1", 40)
    assert s["outcomes"][0]["outcome"] == "completed", s
    assert s["outcomes"][0]["controllerId"] == "vendor-1"
    (conv,) = s["conversations"]
    assert conv["ended"] and not conv["audioOnly"] and not conv["interrupted"]
    assert conv["audioBytes"] == s["stats"]["audioBytes"] > RATE * 2  # over 1 s of speech
    assert conv["peak"] > 1000, "the PCM is silent"
    assert conv["frames"] > 10
    assert conv["endAfterFrames"] == conv["frames"], "end was given before the last frame"
    assert s["dropped"] == 0 and s["ignored"] == 0
    assert s["ops"][-1] == "audio" and "interrupt" not in s["ops"]
    first = parse_vendor_frame(conv["firstFrame"])
    assert first.WhichOneof("data") == "server_response_animation", first
    assert s["errors"] == []

    # 2. A late joiner starts at the next conversation.
    await page.evaluate("(t) => hostModeTest.speak(t)", LONG_TEXT)
    await wait_state(
        page, "s.conversations.length === 2 && s.conversations[1].audioChunks >= 5", 20
    )
    late = await open_bridge_page(browser, data_stack, "controller=recording", errors)
    s_late = await wait_state(late, "s.stats.skippedLate === 1", 15)
    assert s_late["conversations"] == []

    # 3. An interrupt reaches the controller's interrupt(); the late joiner saw nothing of it.
    await page.evaluate("hostModeTest.interrupt()")
    s = await wait_state(page, "s.outcomes.length >= 2", 10)
    assert s["outcomes"][1]["outcome"] == "interrupted"
    assert s["conversations"][1]["interrupted"]
    assert s["ops"][-1] == "interrupt"
    assert (await state(late))["calls"] == 0

    # 4. Both pages follow the next conversation from its start.
    await page.evaluate("(t) => hostModeTest.speak(t)", SHORT_TEXT)
    for p, n in ((page, 3), (late, 1)):
        s = await wait_state(p, f"s.outcomes.length >= {n}", 40)
        assert s["outcomes"][-1]["outcome"] == "completed", s["outcomes"]
        last = s["conversations"][-1]
        assert last["endAfterFrames"] == last["frames"] > 10
        assert s["dropped"] == 0
    assert errors == []


async def test_bridge_isolates_a_throwing_controller(
    data_stack: DemoStack, browser: Browser
) -> None:
    errors: list[str] = []
    page = await open_bridge_page(
        browser, data_stack, "controller=recording&fail=yieldFramesData", errors
    )
    await page.evaluate("(t) => hostModeTest.speak(t)", SHORT_TEXT)
    s = await wait_state(page, "s.outcomes.length >= 1", 40)
    assert s["outcomes"][0]["outcome"] == "failed"
    assert s["stats"]["controllerErrors"] == 1
    assert s["errors"][0][0] == "yieldFramesData"
    await page.evaluate("(t) => hostModeTest.speak(t)", SHORT_TEXT)
    s = await wait_state(page, "s.outcomes.length >= 2", 40)
    assert s["outcomes"][1]["outcome"] == "completed"
    assert s["conversations"][-1]["frames"] > 10
    assert errors == []


async def test_bridge_drives_our_host_mode_controller(
    data_stack: DemoStack, browser: Browser
) -> None:
    errors: list[str] = []
    page = await open_bridge_page(browser, data_stack, f"controller=ours&rate={RATE}", errors)
    for n in (1, 2):
        await page.evaluate("(t) => hostModeTest.speak(t)", SHORT_TEXT)
        s = await wait_state(page, f"s.outcomes.length >= {n}", 40)
        assert s["outcomes"][-1] == {
            "id": s["outcomes"][-1]["id"],
            "controllerId": f"hm-{n}",
            "outcome": "completed",
        }
    assert [st[:2] for st in s["states"]][:1] == [["playing", "playbackStart"]]
    assert s["controllerStats"]["framesReceived"] > 20
    assert s["controllerStats"]["framesDropped"] == 0
    assert errors == []


# -- audio sent as data, played by the web client ------------------------------------------


def clapperboard_wav(seconds: float, rate: int = 24000) -> str:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(clapperboard_audio(rate, seconds, 0.52, 120, 0.2))
    return base64.b64encode(out.getvalue()).decode()


async def assert_plays_data_audio_in_sync(
    stack: DemoStack, browser: Browser, query: str, rate: int
) -> None:
    errors: list[str] = []
    page = await open_demo(browser, stack.url + query, errors)
    await page.evaluate("avatarRelay.setMotionSource('clapperboard')")
    await page.evaluate("avatarRelay.resetSync()")
    await page.evaluate("(b64) => avatarRelay.sendWavBase64(b64)", clapperboard_wav(6.0))
    await page.wait_for_function("() => avatarRelayDebug.conversationId !== null", timeout=30_000)
    await page.wait_for_function("() => avatarRelayDebug.audioEnergy > 0.01", timeout=10_000)
    await page.wait_for_function("() => avatarRelayDebug.conversationId === null", timeout=30_000)
    data = await page.evaluate("avatarRelayDebug.dataAudio")
    offsets = np.asarray(await page.evaluate("avatarRelay.syncOffsets()"), dtype=np.float64)
    await page.close()
    print(f"[web-data-audio {query}] data audio {data}; offsets ms {np.round(offsets).tolist()}")
    assert data["conversations"] == 1 and data["samples"] == 6 * rate, data
    assert data["duplicates"] == 0
    expected = len(np.arange(0.2, 6.0, 0.52))
    assert len(offsets) >= expected - 2, f"markers matched {len(offsets)} / {expected}"
    # Presentation is quantized to the display refresh (16.7 ms); ITU-R BT.1359 detects 45 ms.
    assert float(np.median(np.abs(offsets))) <= 25, offsets
    assert float(np.max(np.abs(offsets))) <= 45, offsets
    assert errors == []


async def test_web_client_plays_audio_sent_as_data(data_stack: DemoStack, browser: Browser) -> None:
    try:
        await assert_plays_data_audio_in_sync(data_stack, browser, "", RATE)
    finally:
        async with chromium() as b:  # put the stack's motion source back for other tests
            page = await open_demo(b, data_stack.url, [])
            await page.evaluate("avatarRelay.setMotionSource('spatius')")
