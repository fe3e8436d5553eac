"""Embedded motion generator: CPU per second of audio, memory per stream, quality vs lookahead.

Run: .venv/bin/python bench/motion_rtf.py [--streams N]
Speech is synthesised with libespeak-ng at run time (tests/motion_speech.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
from motion_speech import ENVELOPE_SENTENCE, measure_quality, synthesize, with_silence  # noqa: E402

from avatar_relay.motion import EmbeddedMotionSource, MotionStream  # noqa: E402

LOOKAHEADS = (0, 60, 120, 200)
CHUNK_MS = 20


async def cpu_per_audio_second(
    source: EmbeddedMotionSource, pcm: np.ndarray, sr: int, repeats: int
) -> float:
    """process_time per second of audio over whole conversations pushed in 20 ms chunks."""
    step = sr * CHUNK_MS // 1000
    chunks = [pcm[i : i + step].tobytes() for i in range(0, len(pcm), step)]
    spent = 0.0
    for r in range(repeats):
        stream = await source.open_stream(f"rtf{r}", sr)
        t0 = time.process_time()
        for c in chunks:
            stream.push_audio(c)
        stream.flush()
        async for _ in stream:
            pass
        spent += time.process_time() - t0
        await stream.aclose()
    return spent / (repeats * len(pcm) / sr)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def memory_per_stream(
    source: EmbeddedMotionSource, pcm: np.ndarray, sr: int, n: int
) -> tuple[float, float]:
    """Python heap (tracemalloc) and RSS growth per open stream after 1 s of audio each.
    RSS also counts pocketsphinx's C allocations."""
    half = pcm[:sr].tobytes()
    rss0 = rss_bytes()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    streams: list[MotionStream] = []
    for i in range(n):
        s = await source.open_stream(f"mem{i}", sr)
        s.push_audio(half)
        streams.append(s)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rss1 = rss_bytes()
    for s in streams:
        await s.aclose()
    return (after - before) / n, (rss1 - rss0) / n


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    speech = with_silence(synthesize(ENVELOPE_SENTENCE * 2), 0.3, 0.3)
    pcm, sr = speech.pcm, speech.sample_rate
    print(f"audio: espeak-ng, {len(pcm) / sr:.1f} s at {sr} Hz, pushed in {CHUNK_MS} ms chunks\n")

    print("| configuration | CPU s per audio s (RTF, 1 core) | streams per core "
          "| heap per stream | RSS per stream |")  # fmt: skip
    print("|---|---|---|---|---|")
    for label, kwargs in [
        ("acoustic cues (default, lookahead 100 ms)", {}),
        (
            "acoustic + pocketsphinx phones (lookahead 200 ms)",
            {"lookahead_ms": 200, "recognition": True},
        ),
    ]:
        source = EmbeddedMotionSource(max_lookahead_ms=200, **kwargs)
        rtf = await cpu_per_audio_second(source, pcm, sr, args.repeats)
        n = args.streams if not source.recognition else min(args.streams, 8)
        heap, rss = await memory_per_stream(source, pcm, sr, n)
        print(f"| {label} | {rtf:.4f} | {1 / rtf:.0f} | {heap / 1024:.0f} KiB "
              f"| {rss / 2**20:.1f} MiB (N={n}) |")  # fmt: skip
    print("\nRSS growth is measured after warm-up runs, so pooled decoders (up to 4) are reused.\n")

    print(
        "| lookahead ms | recognition | jaw-envelope r | bilabials closed | open vowels open "
        "| silence max lip gap |"
    )
    print("|---|---|---|---|---|---|")
    for la in LOOKAHEADS:
        for rec in (False, True):
            q = await measure_quality(
                EmbeddedMotionSource(lookahead_ms=la, recognition=rec, max_lookahead_ms=200)
            )
            print(f"| {la} | {'on' if rec else 'off'} | {q.jaw_envelope_r:.3f} "
                  f"| {q.bilabial_closed}/{q.bilabial_total} ({q.bilabial_rate:.0%}) "
                  f"| {q.vowel_open}/{q.vowel_total} ({q.vowel_open_rate:.0%}) "
                  f"| {q.silence_max_gap:.3f} |")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
