"""Coarticulation: blend recognised visemes into the acoustic targets and smooth over time.

Real mouths cannot jump between shapes in one 40 ms frame, and closing is faster than opening
(lips snap shut for a /p/). Each articulation parameter therefore follows its target through an
attack/release one-pole filter: fast attack for closure, gentler release everywhere.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_relay.motion.embedded.channels import CLOSE, LABIODENTAL, OPEN, PARAMS

ATTACK: Final = np.array([0.75, 0.9, 0.55, 0.55, 0.8], dtype=np.float32)
"""Per-frame fraction of the way a parameter moves towards a higher target."""
RELEASE: Final = np.array([0.65, 0.6, 0.45, 0.45, 0.5], dtype=np.float32)
"""Per-frame fraction of the way a parameter moves towards a lower target."""
VISEME_WEIGHT: Final = 0.6
"""How much a recognised viseme decides the mouth shape over the acoustic estimate."""


def blend(acoustic: npt.NDArray[np.float32], viseme: npt.NDArray[np.float32] | None,
          weight: float = VISEME_WEIGHT) -> npt.NDArray[np.float32]:  # fmt: skip
    """Combine one frame's acoustic target with a recognised viseme's target (or none).

    The jaw keeps the acoustic amplitude (the viseme only scales it), so a late or wrong phone
    can never open a silent mouth; closure takes the stronger of the two cues.
    """
    if viseme is None:
        return acoustic
    out = (1.0 - weight) * acoustic + weight * viseme
    out[OPEN] = acoustic[OPEN] * ((1.0 - weight) + weight * 1.5 * viseme[OPEN])
    out[CLOSE] = max(float(acoustic[CLOSE]), weight * float(viseme[CLOSE]) * 1.4)
    out[LABIODENTAL] = weight * float(viseme[LABIODENTAL])
    return np.clip(out, 0.0, 1.0).astype(np.float32)


class Smoother:
    """Attack/release smoothing of articulation parameters, frame by frame."""

    def __init__(self) -> None:
        self._state = np.zeros(len(PARAMS), dtype=np.float32)

    def step(self, target: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Advance one frame towards ``target``; returns the new state (a copy)."""
        rate = np.where(target > self._state, ATTACK, RELEASE)
        self._state = self._state + rate * (target - self._state)
        return self._state.copy()
