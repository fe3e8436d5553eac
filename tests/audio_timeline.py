"""What a receiver heard, as a timeline: loud and quiet runs of 10 ms chunks, with times.

The test audio is speech over a continuous quiet tone (:func:`speech_over_tone_wav`): every
chunk of it is above the loudness threshold, so any chunk that is quiet while it plays is
audio lost. :class:`AudioTimeline` is pure (no I/O, no asyncio): it is fed chunks with the
monotonic time they were presented, by :class:`HeardAudio` in the test process or by the
receiver child process in a network namespace (which sends its runs as JSON lines).
"""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from livekit import rtc
from relay_helpers import espeak_pcm

from avatar_relay.client import AvatarReceiver

HOLE_S = 0.1
"""Chunks presented this much later than the previous one ended leave a hole: nothing was
presented meanwhile (the track was gone, or the stream stalled). A hole is a quiet run."""
LOUD_THRESHOLD = 300
"""A 10 ms chunk whose peak is above this is sound (the tone bed is ~1500 at 24 kHz)."""
TONE_AMPLITUDE = 1500
TONE_HZ = 220.0


def speech_over_tone_wav(text: str, *, lead_s: float = 0.3, tail_s: float = 0.3) -> bytes:
    """espeak-ng speech mixed over a steady tone that runs from the first to the last sample."""
    pcm, rate = espeak_pcm(text)
    speech = np.frombuffer(pcm, dtype=np.int16).astype(np.int32)
    total = round(lead_s * rate) + len(speech) + round(tail_s * rate)
    t = np.arange(total) / rate
    mix = (np.sin(2 * np.pi * TONE_HZ * t) * TONE_AMPLITUDE).astype(np.int32)
    start = round(lead_s * rate)
    mix[start : start + len(speech)] += speech
    return _wav(np.clip(mix, -32768, 32767).astype(np.int16), rate)


def wav_seconds(wav: bytes) -> float:
    with wave.open(io.BytesIO(wav)) as w:
        return float(w.getnframes() / w.getframerate())


def _wav(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


@dataclass(slots=True)
class Run:
    """Consecutive chunks that were all loud, or all quiet."""

    loud: bool
    t0: float
    """Monotonic time the run's first chunk was presented."""
    t1: float
    """Monotonic time the run's last chunk ended (presented + its duration)."""
    seconds: float
    """Audio duration of the run (sum of its chunks; a hole adds none)."""

    @property
    def span(self) -> float:
        return self.t1 - self.t0


class AudioTimeline:
    """Loud/quiet runs of presented audio chunks."""

    def __init__(self, *, threshold: int = LOUD_THRESHOLD) -> None:
        self.threshold = threshold
        self.runs: list[Run] = []
        self.chunks = 0
        self.on_run_closed: Callable[[Run], None] | None = None

    def add(self, presented_at: float, samples: np.ndarray, sample_rate: int) -> None:
        seconds = len(samples) / sample_rate
        loud = bool(len(samples)) and int(np.abs(samples.astype(np.int32)).max()) > self.threshold
        self.chunks += 1
        last = self.runs[-1] if self.runs else None
        if last is not None and presented_at - last.t1 > HOLE_S:
            hole = Run(False, last.t1, presented_at, 0.0)
            if last.loud:
                if self.on_run_closed is not None:
                    self.on_run_closed(last)
                self.runs.append(hole)
            else:
                last.t1 = presented_at
            last = self.runs[-1]
        if last is not None and last.loud == loud:
            last.t1 = presented_at + seconds
            last.seconds += seconds
            return
        if last is not None and self.on_run_closed is not None:
            self.on_run_closed(last)
        self.runs.append(Run(loud, presented_at, presented_at + seconds, seconds))

    def add_run(self, run: Run) -> None:
        """Merge a run reported by another process."""
        last = self.runs[-1] if self.runs else None
        if last is not None and last.loud == run.loud:
            last.t1, last.seconds = run.t1, last.seconds + run.seconds
        else:
            self.runs.append(Run(run.loud, run.t0, run.t1, run.seconds))

    def heard_s(self, *, since: float = float("-inf")) -> float:
        """Loud audio presented from ``since`` on (runs that started then or later)."""
        return sum(r.seconds for r in self.runs if r.loud and r.t0 >= since)

    def last_loud_end(self) -> float | None:
        loud = [r for r in self.runs if r.loud]
        return loud[-1].t1 if loud else None

    def first_loud_after(self, t: float) -> float | None:
        for r in self.runs:
            if r.loud and r.t0 >= t:
                return r.t0
        return None

    def went_quiet_after(self, t: float, quiet_s: float) -> bool:
        """Loud audio was heard after ``t`` and has been followed by ``quiet_s`` of quiet."""
        runs = [r for r in self.runs if r.t1 >= t]
        return any(r.loud for r in runs) and not runs[-1].loud and runs[-1].span >= quiet_s

    def gaps(self, *, since: float = float("-inf"), until: float = float("inf")) -> list[Run]:
        """Quiet runs between two loud runs, within ``[since, until]``: audio lost if the
        tone was playing."""
        inner = [r for r in self.runs if r.t0 >= since and r.t1 <= until]
        while inner and not inner[0].loud:
            inner.pop(0)
        while inner and not inner[-1].loud:
            inner.pop()
        return [r for r in inner if not r.loud]

    def describe(self) -> list[dict[str, float | bool]]:
        return [asdict(r) for r in self.runs]


def gaps_outside(
    gaps: list[Run], window: tuple[float, float], *, slack_s: float = 0.0
) -> list[Run]:
    """The gaps not within the fault ``window`` (start, end), widened by ``slack_s``."""
    lo, hi = window[0] - slack_s, window[1] + slack_s
    return [g for g in gaps if g.t0 < lo or g.t1 > hi]


class HeardAudio:
    """Consumes an :class:`AvatarReceiver` (the real client path) into an AudioTimeline."""

    def __init__(self, receiver: AvatarReceiver) -> None:
        self.receiver = receiver
        self.timeline = AudioTimeline()
        self._updated = asyncio.Event()
        self._read_atask: asyncio.Task[None] | None = None
        self._errors_before = 0
        self.relay_joined_at: list[float] = []
        receiver.on("relay_left", self._on_relay_left)
        receiver.on("relay_joined", lambda _: self.relay_joined_at.append(time.monotonic()))

    def _on_relay_left(self, _: object) -> None:
        # The receiver starts a fresh reassembler (and error count) for each relay it adopts.
        self._errors_before += self.receiver.protocol_errors

    @property
    def protocol_errors(self) -> int:
        """Undecodable packets from every relay this receiver followed."""
        return (
            self._errors_before
            + self.receiver.protocol_errors
            + self.receiver.stats.packets_dropped
        )

    def start(self) -> None:
        self._read_atask = asyncio.create_task(self._read(), name="heard-audio.read")

    @classmethod
    def in_room(cls, room: rtc.Room) -> HeardAudio:
        """A started receiver of its own in ``room``, timing what it hears."""
        heard = cls(AvatarReceiver(room))
        heard.receiver.start()
        heard.start()
        return heard

    async def _read(self) -> None:
        async for item in self.receiver:
            samples = np.frombuffer(item.audio.data, dtype=np.int16)
            self.timeline.add(item.presented_at, samples, item.audio.sample_rate)
            self._updated.set()

    async def wait_until(self, predicate: Callable[[AudioTimeline], bool]) -> None:
        while not predicate(self.timeline):
            self._updated.clear()
            await self._updated.wait()

    async def wait_heard(self, seconds: float, *, since: float = float("-inf")) -> None:
        await self.wait_until(lambda tl: tl.heard_s(since=since) >= seconds)

    async def wait_quiet_after(self, t: float, quiet_s: float = 0.3) -> None:
        """Until a quiet run of ``quiet_s`` follows loud audio heard after ``t`` (the
        utterance is over)."""

        await self.wait_until(lambda tl: tl.went_quiet_after(t, quiet_s))

    async def aclose(self) -> None:
        await self.receiver.aclose()
        if self._read_atask is not None:
            await asyncio.gather(self._read_atask, return_exceptions=True)
