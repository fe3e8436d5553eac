"""Articulation from acoustic cues that need no recognition and (almost) no lookahead.

Recognised phones arrive 140-190 ms after they begin, so the mouth is driven first by what the
audio of the frame itself says: the level of the voiced band opens the jaw; a dip to near
silence inside speech (a stop closure) or a quiet, low-pitched murmur (a nasal) closes the
lips; a low spectral centroid rounds them and a high one spreads them. Every cue is language
independent. Levels are taken relative to a tracked speech peak so loud and quiet voices both
use the full range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_relay.motion.embedded.channels import CLOSE, OPEN, PARAMS, ROUND, SPREAD

SILENCE_DBFS: Final = -60.0
"""Frames whose voiced-band level is below this are silence whatever the speech peak is."""
OPEN_RANGE_DB: Final = 26.0
"""The jaw goes from shut to fully open over this many dB below the speech peak."""
PEAK_RELEASE_DB: Final = 0.12
"""How fast the tracked speech peak decays per frame (3 dB/s at 25 fps)."""
PEAK_FLOOR_DBFS: Final = -45.0
"""The tracked peak never falls below this, so faint noise never opens the jaw."""
MURMUR_CENTROID_HZ: Final = 480.0
"""Below this spectral centroid a quiet voiced frame is a nasal murmur (lips shut for /m/)."""
IN_SPEECH_FRAMES: Final = 6
"""A quiet frame within this many frames of loud speech is a closure, later it is a pause."""
DIP_DB: Final = 24.0
"""A quarter-frame this far below the speech peak inside speech is a stop closure."""
ANTICIPATION_S: Final = 0.02
"""Lips and jaw move ahead of the sound; the analysis window leads by this much if it may."""


@dataclass(frozen=True, slots=True)
class FrameFeatures:
    """Per-frame acoustic measurements, one row per frame."""

    level_db: npt.NDArray[np.float64]
    """Voiced-band (100-4000 Hz) level, dB re full scale."""
    low_ratio_db: npt.NDArray[np.float64]
    """Energy below 900 Hz over energy above it, dB (high in nasals and closures)."""
    centroid_hz: npt.NDArray[np.float64]
    """Spectral centroid of 100-4000 Hz."""
    high_ratio_db: npt.NDArray[np.float64]
    """Energy above 3500 Hz over 100-3500 Hz, dB (high in sibilants)."""
    dip_db: npt.NDArray[np.float64]
    """Level of the quietest quarter of the window, dB re full scale (catches short closures)."""


class SpectralFeatures:
    """Vectorised per-frame spectra of windows of a fixed length at the input sample rate."""

    def __init__(self, sample_rate: int, window: int) -> None:
        self.window = window
        self._nfft = 1 << max(8, (window - 1).bit_length())
        self._hann = np.hanning(window).astype(np.float64)
        freqs = np.fft.rfftfreq(self._nfft, 1.0 / sample_rate)
        self._voiced = (freqs >= 100.0) & (freqs < 4000.0)
        self._low = (freqs >= 100.0) & (freqs < 900.0)
        self._mid = (freqs >= 900.0) & (freqs < 4000.0)
        self._sib_lo = (freqs >= 100.0) & (freqs < 3500.0)
        self._sib_hi = freqs >= 3500.0
        self._freqs_voiced = freqs[self._voiced]
        # one-sided power -> mean square of the windowed-corrected signal
        self._norm = 2.0 / (self._nfft * float(np.sum(self._hann**2)))

    def compute(self, windows: npt.NDArray[np.float32]) -> FrameFeatures:
        """``windows`` is (n_frames, window) float samples in [-1, 1]."""
        spec = np.abs(np.fft.rfft(windows * self._hann, n=self._nfft, axis=1)) ** 2
        spec *= self._norm
        eps = 1e-12
        voiced = spec[:, self._voiced]
        e_voiced = voiced.sum(axis=1)
        e_low = spec[:, self._low].sum(axis=1)
        e_mid = spec[:, self._mid].sum(axis=1)
        e_sib_hi = spec[:, self._sib_hi].sum(axis=1)
        e_sib_lo = spec[:, self._sib_lo].sum(axis=1)
        centroid = (voiced @ self._freqs_voiced) / (e_voiced + eps)
        quarters = windows[:, : windows.shape[1] // 4 * 4].reshape(windows.shape[0], 4, -1)
        dip = np.min(np.mean(np.square(quarters, dtype=np.float64), axis=2), axis=1)
        return FrameFeatures(
            dip_db=10.0 * np.log10(dip + eps),
            level_db=10.0 * np.log10(e_voiced + eps),
            low_ratio_db=10.0 * np.log10((e_low + eps) / (e_mid + eps)),
            centroid_hz=centroid,
            high_ratio_db=10.0 * np.log10((e_sib_hi + eps) / (e_sib_lo + eps)),
        )


class AcousticArticulation:
    """Turns frame features into articulation targets; keeps the speech-peak state."""

    def __init__(self) -> None:
        self._peak_db = PEAK_FLOOR_DBFS
        self._frames_since_speech = 1_000

    def targets(self, f: FrameFeatures) -> npt.NDArray[np.float32]:
        """Articulation targets (n, len(PARAMS)) for consecutive frames."""
        n = f.level_db.shape[0]
        out = np.zeros((n, len(PARAMS)), dtype=np.float32)
        for i in range(n):
            level = float(f.level_db[i])
            self._peak_db = max(level, self._peak_db - PEAK_RELEASE_DB, PEAK_FLOOR_DBFS)
            below = self._peak_db - level
            if level < SILENCE_DBFS:
                self._frames_since_speech += 1
                continue
            opening = min(1.0, max(0.0, (OPEN_RANGE_DB - below) / (OPEN_RANGE_DB - 4.0)))
            sibilance = min(1.0, max(0.0, (float(f.high_ratio_db[i]) + 3.0) / 9.0))
            opening *= 1.0 - 0.5 * sibilance
            in_speech = self._frames_since_speech < IN_SPEECH_FRAMES
            if below < 12.0:
                self._frames_since_speech = 0
            else:
                self._frames_since_speech += 1
            close = 0.0
            if in_speech and (below > 22.0 or self._peak_db - float(f.dip_db[i]) > DIP_DB):
                close = 1.0  # a stop closure inside speech
            elif in_speech and below > 5.0:
                # nasal murmur: quieter than the vowels around it, energy far below F2
                murmur = (MURMUR_CENTROID_HZ - float(f.centroid_hz[i])) / 100.0
                murmur = min(murmur, (float(f.low_ratio_db[i]) - 3.0) / 3.0)
                close = min(1.0, max(0.0, murmur))
            opening *= 1.0 - 0.6 * close
            voiced_weight = min(1.0, max(0.0, (20.0 - below) / 10.0)) * (1.0 - close)
            c = float(f.centroid_hz[i])
            out[i, OPEN] = opening**1.2
            out[i, CLOSE] = close
            out[i, ROUND] = voiced_weight * min(1.0, max(0.0, (900.0 - c) / 400.0))
            out[i, SPREAD] = voiced_weight * min(1.0, max(0.0, (c - 1500.0) / 900.0))
        return out
