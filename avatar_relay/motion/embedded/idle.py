"""Idle life: blinks, slow head drift, breathing and brow movement, deterministic per seed.

Every value is a pure function of the seed and the absolute frame index, so any range of idle
frames can be produced in any order and two relays with one seed show the same face.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_relay.motion.embedded.channels import CH, CHANNELS

BLINK_SHAPE: Final = np.array([0.45, 1.0, 0.85, 0.4, 0.1], dtype=np.float32)
"""eyeBlink weights of the frames of one blink (200 ms)."""
BREATH_HZ: Final = 0.25


class IdleMotion:
    """Weights of the non-mouth channels for any frame range."""

    def __init__(self, seed: int, fps: float = 25.0) -> None:
        self.fps = fps
        rng = np.random.default_rng(seed)
        self._blink_rng = np.random.default_rng(rng.integers(1 << 62))
        self._blinks: list[int] = []
        self._next_blink = float(rng.uniform(0.5, 2.5)) * fps
        # head drift: three incommensurate sinusoids per axis
        self._freqs = rng.uniform(0.04, 0.22, size=(3, 3))
        self._phases = rng.uniform(0.0, 2 * np.pi, size=(3, 3))
        self._amps = np.array([0.035, 0.06, 0.025])[:, None] * rng.uniform(0.5, 1.0, size=(3, 3))
        self._brow_freq = float(rng.uniform(0.05, 0.12))
        self._brow_phase = float(rng.uniform(0.0, 2 * np.pi))

    def _blink_onsets_until(self, frame: int) -> list[int]:
        while self._next_blink <= frame:
            self._blinks.append(int(self._next_blink))
            gap_s = 1.8 + float(self._blink_rng.gamma(2.0, 1.1))
            self._next_blink += gap_s * self.fps
        return self._blinks

    def weights(self, first_frame: int, count: int) -> npt.NDArray[np.float32]:
        """(count, len(CHANNELS)) weights; mouth channels are zero (closed)."""
        out = np.zeros((count, len(CHANNELS)), dtype=np.float32)
        if count <= 0:
            return out
        idx = np.arange(first_frame, first_frame + count)
        t = idx / self.fps
        blink = np.zeros(count, dtype=np.float32)
        for onset in self._blink_onsets_until(first_frame + count):
            lo, hi = max(onset, first_frame), min(onset + len(BLINK_SHAPE), first_frame + count)
            if lo < hi:
                blink[lo - first_frame : hi - first_frame] = BLINK_SHAPE[lo - onset : hi - onset]
        out[:, CH["eyeBlinkLeft"]] = blink
        out[:, CH["eyeBlinkRight"]] = blink
        waves = np.sin(2 * np.pi * self._freqs[:, :, None] * t + self._phases[:, :, None])
        head = np.sum(self._amps[:, :, None] * waves, axis=1)  # (3 axes, count)
        breath = 0.015 * np.sin(2 * np.pi * BREATH_HZ * t)
        out[:, CH["headPitch"]] = head[0] + breath
        out[:, CH["headYaw"]] = head[1]
        out[:, CH["headRoll"]] = head[2]
        brow = 0.06 + 0.04 * np.sin(2 * np.pi * self._brow_freq * t + self._brow_phase)
        out[:, CH["browInnerUp"]] = brow
        out[:, CH["browOuterUpLeft"]] = 0.6 * brow
        out[:, CH["browOuterUpRight"]] = 0.6 * brow
        return out
