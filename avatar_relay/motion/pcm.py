"""Validation and buffering of PCM s16le mono shared by the motion streams."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from avatar_relay.motion.base import MotionAudioError
from avatar_relay.protocol.constants import DEFAULT_FPS, SUPPORTED_SAMPLE_RATES


def check_sample_rate(sample_rate: int) -> int:
    """Return the samples per frame at ``sample_rate``; reject rates Host Mode does not allow."""
    if sample_rate not in SUPPORTED_SAMPLE_RATES:
        raise MotionAudioError(
            f"unsupported sample rate {sample_rate}; expected one of {SUPPORTED_SAMPLE_RATES}"
        )
    return sample_rate // DEFAULT_FPS


def decode_s16le(pcm: bytes) -> npt.NDArray[np.float32]:
    """PCM s16le bytes -> float32 samples in [-1, 1). Raises MotionAudioError on odd lengths."""
    if len(pcm) % 2:
        raise MotionAudioError(f"pcm s16le needs an even byte count, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) * np.float32(1.0 / 32768.0)


class SampleBuffer:
    """Append-only sample history addressed by absolute sample index, trimmed from the front."""

    def __init__(self) -> None:
        self._data = np.zeros(0, dtype=np.float32)
        self._start = 0  # absolute index of self._data[0]

    @property
    def end(self) -> int:
        """Absolute index one past the last sample pushed."""
        return self._start + len(self._data)

    def append(self, samples: npt.NDArray[np.float32]) -> None:
        self._data = np.concatenate([self._data, samples])

    def window(self, start: int, stop: int) -> npt.NDArray[np.float32]:
        """Samples ``[start, stop)``; zeros where nothing was pushed (or already trimmed)."""
        out = np.zeros(stop - start, dtype=np.float32)
        lo, hi = max(start, self._start), min(stop, self.end)
        if lo < hi:
            out[lo - start : hi - start] = self._data[lo - self._start : hi - self._start]
        return out

    def trim(self, before: int) -> None:
        """Forget samples before absolute index ``before``."""
        cut = min(max(0, before - self._start), len(self._data))
        if cut:
            self._data = self._data[cut:]
            self._start += cut
