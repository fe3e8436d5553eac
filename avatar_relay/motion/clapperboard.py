"""A test pattern for sync checks: tone bursts in the audio, marked frames in the animation.

:func:`clapperboard_audio` makes 1 kHz bursts that start exactly on frame boundaries
(``offset_s + n * period_s``, all multiples of 40 ms). The clapperboard stream does not trust
that schedule: it finds burst onsets in the audio actually pushed (sample accurate) and marks
the frames that contain them, so any audio works and a receiver can compare where the marks
land against where it hears the onsets (:func:`detect_tone_onsets`).

Frame payload (``arkit-u8``, channels :data:`CLAPPER_CHANNELS`): ``jawOpen`` is 1 on every
frame during which a burst sounds, ``eyeBlinkLeft``/``eyeBlinkRight`` are 1 only on the frame
containing a burst onset (the marker), everything else is 0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_relay.motion.base import (
    MotionError,
    MotionFrame,
    MotionSource,
    MotionStream,
    MotionStreamEnd,
    MotionStreamInfo,
)
from avatar_relay.motion.frame_queue import FrameQueue
from avatar_relay.motion.pcm import check_sample_rate, decode_s16le
from avatar_relay.protocol.blendshapes import ARKIT_CODEC, ArkitU8Codec
from avatar_relay.protocol.constants import DEFAULT_FPS

CLAPPER_CHANNELS: Final[tuple[str, ...]] = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight")
TONE_HZ: Final = 1000.0
TONE_AMPLITUDE: Final = 0.5
ONSET_THRESHOLD: Final = 0.05
"""A stream marks a burst where |sample| first reaches this (full scale 1.0, the tone is 0.5)."""
MIN_GAP_S: Final = 0.05
"""Quiet needed before an onset counts, so one burst never yields two onsets."""
_FRAME_S: Final = 1.0 / DEFAULT_FPS


def _on_frame_grid(value_s: float) -> bool:
    frames = value_s / _FRAME_S
    return abs(frames - round(frames)) < 1e-9


def clapperboard_audio(
    sample_rate: int,
    duration_s: float,
    period_s: float = 1.0,
    burst_ms: int = 120,
    offset_s: float = 0.2,
) -> bytes:
    """PCM s16le mono with a 1 kHz burst at ``offset_s + n * period_s`` for ``burst_ms``.

    Bursts start at 30 degrees of phase, so a burst's first sample is already at half amplitude
    and detectors find that very sample; they fade out over 2 ms. Times must lie on the 40 ms
    frame grid.
    """
    check_sample_rate(sample_rate)
    if not all(_on_frame_grid(v) for v in (period_s, offset_s, burst_ms / 1000.0)):
        raise ValueError("period_s, offset_s and burst_ms must be multiples of 40 ms")
    if period_s <= burst_ms / 1000.0 + MIN_GAP_S or duration_s < 0 or offset_s < 0:
        raise ValueError("bursts need a period longer than the burst plus 50 ms")
    n = int(round(duration_s * sample_rate))
    out = np.zeros(n, dtype=np.float64)
    burst_len = sample_rate * burst_ms // 1000
    t = np.arange(burst_len) / sample_rate
    burst = TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t + np.pi / 6)
    fade = min(burst_len, sample_rate // 500)
    burst[burst_len - fade :] *= np.linspace(1.0, 0.0, fade)
    for start in burst_onset_samples(sample_rate, n, period_s, offset_s):
        stop = min(n, start + burst_len)
        out[start:stop] = burst[: stop - start]
    return (np.rint(out * 32767.0)).astype("<i2").tobytes()


def burst_onset_samples(
    sample_rate: int, n_samples: int, period_s: float, offset_s: float
) -> list[int]:
    """Sample indices at which :func:`clapperboard_audio` starts its bursts."""
    onsets = []
    k = 0
    while (start := int(round((offset_s + k * period_s) * sample_rate))) < n_samples:
        onsets.append(start)
        k += 1
    return onsets


def _onsets(loud: npt.NDArray[np.bool_], min_gap: int, last_loud: int, base: int) -> list[int]:
    """Absolute indices of loud samples preceded by at least ``min_gap`` quiet samples."""
    idx = np.flatnonzero(loud) + base
    if idx.size == 0:
        return []
    prev = np.concatenate(([last_loud], idx[:-1]))
    return [int(i) for i in idx[idx - prev > min_gap]]


def detect_tone_onsets(
    pcm: npt.NDArray[np.int16] | npt.NDArray[np.floating],
    sample_rate: int,
    threshold: float | None = None,
) -> list[float]:
    """Onset times (s) of bursts in received audio: the first sample of each burst whose
    magnitude reaches ``threshold`` after at least 50 ms below it.

    ``pcm`` is int16 samples or floats in [-1, 1]. Without a threshold it is 30% of the
    signal's robust peak (99.9th percentile), which tolerates codec gain changes and pre-echo.
    """
    x = np.asarray(pcm)
    mag = np.abs(x.astype(np.float64) / 32768.0 if x.dtype == np.int16 else x.astype(np.float64))
    if mag.size == 0:
        return []
    if threshold is None:
        peak = float(np.percentile(mag, 99.9))
        if peak < 1e-3:
            return []
        threshold = 0.3 * peak
    min_gap = int(MIN_GAP_S * sample_rate)
    return [i / sample_rate for i in _onsets(mag >= threshold, min_gap, -min_gap - 1, 0)]


class ClapperboardStream(MotionStream):
    """Marks the frames of one conversation that contain burst onsets and burst sound."""

    def __init__(self, sample_rate: int) -> None:
        self._spf = check_sample_rate(sample_rate)
        self.sample_rate = sample_rate
        self._info = MotionStreamInfo(ARKIT_CODEC, float(DEFAULT_FPS), CLAPPER_CHANNELS, 0)
        self._codec = ArkitU8Codec(CLAPPER_CHANNELS)
        self._queue = FrameQueue()
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_out = 0
        self._min_gap = int(MIN_GAP_S * sample_rate)
        self._last_loud = -self._min_gap - 1
        self._flushed = False
        self.onsets: list[int] = []
        """Sample indices of the burst onsets found so far."""

    @property
    def info(self) -> MotionStreamInfo:
        return self._info

    def push_audio(self, pcm: bytes) -> None:
        if self._flushed:
            raise MotionError("push_audio after flush")
        samples = decode_s16le(pcm)
        if self._queue.ended or samples.size == 0:
            return
        self._pending = np.concatenate([self._pending, samples])
        whole = len(self._pending) // self._spf
        if whole:
            self._emit(self._pending[: whole * self._spf].reshape(whole, self._spf))
            self._pending = self._pending[whole * self._spf :]

    def flush(self) -> None:
        if self._flushed or self._queue.ended:
            return
        self._flushed = True
        if len(self._pending):
            last = np.zeros(self._spf, dtype=np.float32)
            last[: len(self._pending)] = self._pending
            self._emit(last.reshape(1, self._spf))
            self._pending = self._pending[:0]
        self._queue.end(MotionStreamEnd())

    async def interrupt(self) -> None:
        self._queue.abandon()

    async def aclose(self) -> None:
        self._queue.abandon()

    def __aiter__(self) -> AsyncIterator[MotionFrame | MotionStreamEnd]:
        return self._queue.iterate()

    def _emit(self, frames: npt.NDArray[np.float32]) -> None:
        """Mark whole frames (one row each), all rows in one pass: this runs for every frame
        of every speaking room in the load benchmark."""
        base = self._frames_out * self._spf
        loud = np.abs(frames) >= ONSET_THRESHOLD
        onsets = _onsets(loud.ravel(), self._min_gap, self._last_loud, base)
        loud_flat = np.flatnonzero(loud)
        if loud_flat.size:
            self._last_loud = base + int(loud_flat[-1])
        self.onsets.extend(onsets)
        weights = np.zeros((len(frames), len(CLAPPER_CHANNELS)), dtype=np.float32)
        weights[:, 0] = loud.any(axis=1)
        marked = [(i - base) // self._spf for i in onsets]
        weights[marked, 1:] = 1.0
        for payload in self._codec.encode_rows(weights):
            self._queue.put(MotionFrame(self._frames_out, payload))
            self._frames_out += 1


class ClapperboardMotionSource(MotionSource):
    """The test-pattern source; its idle frames are all zero (mouth shut, eyes open)."""

    name = "clapperboard"

    def __init__(self) -> None:
        self._codec = ArkitU8Codec(CLAPPER_CHANNELS)

    async def open_stream(self, conversation_id: str, sample_rate: int) -> MotionStream:
        return ClapperboardStream(sample_rate)

    def idle_info(self) -> MotionStreamInfo:
        return MotionStreamInfo(ARKIT_CODEC, float(DEFAULT_FPS), CLAPPER_CHANNELS, 0)

    def idle_frames(self, first_frame: int, count: int) -> Sequence[bytes]:
        if first_frame < 0 or count < 0:
            raise ValueError("first_frame and count must be >= 0")
        return [bytes(len(CLAPPER_CHANNELS))] * count
