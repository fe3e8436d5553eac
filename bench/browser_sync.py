"""Audio/animation sync in a real browser (Debian's headless Chromium), with the clapperboard.

The demo stack runs (livekit-server, worker, web page). The page switches the relay's motion
source to ``clapperboard`` and sends a WAV of 1 kHz tone bursts; the relay marks the frame
holding each burst onset (both eye blinks at 1). In the page, an AudioWorklet on the played
track timestamps every burst onset as it is heard (context time mapped to performance.now()
through AudioContext.getOutputTimestamp), and the presenter timestamps every marker frame it
draws (requestAnimationFrame time). offset = presented - heard: positive means the picture
is late.

    .venv/bin/python bench/browser_sync.py [--conversations 3] [--seconds 20] [--write]

Prints p50/p95/p99/max |offset| and the signed mean; --write replaces the "## Browser sync"
section of docs/BENCHMARKS.md with the table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import sys
import uuid
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from web_page import chromium, open_demo  # noqa: E402

from agent.demo import DemoStack  # noqa: E402
from avatar_relay.motion import clapperboard_audio  # noqa: E402

WAV_RATE = 24000
PERIOD_S = 0.52
OFFSET_S = 0.2
BURST_MS = 120
SECTION = "## Browser sync"
BENCHMARKS = ROOT / "docs" / "BENCHMARKS.md"


def clapperboard_wav(seconds: float) -> bytes:
    pcm = clapperboard_audio(WAV_RATE, seconds, PERIOD_S, BURST_MS, OFFSET_S)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(WAV_RATE)
        w.writeframes(pcm)
    return out.getvalue()


async def measure(conversations: int, seconds: float) -> tuple[list[float], dict[str, float]]:
    wav64 = base64.b64encode(clapperboard_wav(seconds)).decode()
    errors: list[str] = []
    async with DemoStack(port=0, room=f"bench-{uuid.uuid4().hex[:8]}") as stack, chromium() as b:
        page = await open_demo(b, stack.url, errors)
        await page.evaluate("avatarRelay.setMotionSource('clapperboard')")
        await page.evaluate("avatarRelay.resetSync()")
        for _ in range(conversations):
            started = await page.evaluate("avatarRelayDebug.conversations.length")
            await page.evaluate("(b64) => avatarRelay.sendWavBase64(b64)", wav64)
            await page.wait_for_function(
                f"() => avatarRelayDebug.conversations.length > {started}", timeout=30_000
            )
            await page.wait_for_function(
                "() => avatarRelayDebug.conversationId === null", timeout=(seconds + 30) * 1000
            )
        offsets: list[float] = await page.evaluate("avatarRelay.syncOffsets()")
        state: dict[str, float] = await page.evaluate(
            "({jitter: avatarRelayDebug.jitterDelayMs, out: avatarRelayDebug.outputLatencyMs,"
            " dropped: avatarRelayDebug.dropped})"
        )
    if errors:
        raise RuntimeError(f"page errors: {errors}")
    return offsets, state


def table(offsets: list[float], state: dict[str, float], expected: int) -> str:
    a = np.abs(np.asarray(offsets, dtype=np.float64))
    signed = np.asarray(offsets, dtype=np.float64)
    rows = [
        "| markers matched | p50 abs offset | p95 | p99 | max | mean offset (signed) |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {len(a)} / {expected} | {np.percentile(a, 50):.1f} ms | {np.percentile(a, 95):.1f} ms"
        f" | {np.percentile(a, 99):.1f} ms | {a.max():.1f} ms | {signed.mean():+.1f} ms |",
    ]
    notes = (
        f"\nAt the end: jitter-buffer delay J = {state['jitter']:.0f} ms, AudioContext output "
        f"latency L = {state['out']:.0f} ms, frames dropped or late = {state['dropped']:.0f}."
    )
    return "\n".join(rows) + notes


def write_section(body: str, command: str) -> None:
    text = BENCHMARKS.read_text()
    section = (
        f"{SECTION}\n\nCommand: `{command}` (2-core VM, Debian Chromium headless, "
        "livekit-server, worker and browser on one machine).\n\n"
        "The page plays the relay's track through WebAudio; an AudioWorklet timestamps each "
        "tone-burst onset as heard (context time mapped to `performance.now()` with "
        "`AudioContext.getOutputTimestamp()`), and the presenter timestamps each clapperboard "
        "marker frame it draws (`requestAnimationFrame` time). Offset = presented - heard "
        "(positive: picture late). Presentation is quantized to the display refresh "
        "(16.7 ms at 60 Hz).\n\n"
        f"{body}\n\nGoal: p95 |offset| <= 20 ms.\n"
    )
    if SECTION in text:
        head, rest = text.split(SECTION, 1)
        tail = rest[rest.find("\n## ") + 1 :] if "\n## " in rest else ""
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    BENCHMARKS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    offsets, state = asyncio.run(measure(args.conversations, args.seconds))
    per_conv = len(np.arange(OFFSET_S, args.seconds, PERIOD_S))
    if not offsets:
        raise SystemExit("no marker could be paired with a heard onset")
    body = table(offsets, state, per_conv * args.conversations)
    print(body)
    print("offsets:", " ".join(f"{o:.0f}" for o in offsets))
    if args.write:
        cmd = ".venv/bin/python bench/browser_sync.py"
        if (args.conversations, args.seconds) != (3, 20.0):
            cmd += f" --conversations {args.conversations} --seconds {args.seconds:g}"
        write_section(body, cmd + " --write")


if __name__ == "__main__":
    main()
