"""Phones of the CMU (pocketsphinx en-us) set -> 15 Oculus-style visemes -> articulation targets.

Visemes carry the mouth *shape* a phone needs (closure, rounding, spreading); the jaw amplitude
still comes mostly from the audio, because recognised phones arrive late and are sometimes wrong.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

VISEMES: Final[tuple[str, ...]] = (
    "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou",
)  # fmt: skip

PHONE_TO_VISEME: Final[dict[str, str]] = {
    "SIL": "sil", "+SPN+": "sil", "+NSN+": "sil",
    "P": "PP", "B": "PP", "M": "PP",
    "F": "FF", "V": "FF",
    "TH": "TH", "DH": "TH",
    "T": "DD", "D": "DD",
    "K": "kk", "G": "kk", "NG": "kk", "HH": "kk",
    "CH": "CH", "JH": "CH", "SH": "CH", "ZH": "CH",
    "S": "SS", "Z": "SS",
    "N": "nn", "L": "nn",
    "R": "RR", "ER": "RR",
    "AA": "aa", "AE": "aa", "AH": "aa", "AY": "aa", "AW": "aa",
    "EH": "E", "EY": "E",
    "IH": "ih", "IY": "ih", "Y": "ih",
    "AO": "oh", "OW": "oh", "OY": "oh",
    "UH": "ou", "UW": "ou", "W": "ou",
}  # fmt: skip
"""Unknown phones (noise, fillers) fall back to ``sil`` via :func:`viseme_of`."""

# open, close, round, spread, labiodental
_TARGETS: Final[dict[str, tuple[float, float, float, float, float]]] = {
    "sil": (0.0, 0.0, 0.0, 0.0, 0.0),
    "PP": (0.15, 1.0, 0.0, 0.0, 0.0),
    "FF": (0.2, 0.0, 0.0, 0.1, 1.0),
    "TH": (0.35, 0.0, 0.0, 0.1, 0.0),
    "DD": (0.35, 0.0, 0.0, 0.2, 0.0),
    "kk": (0.45, 0.0, 0.0, 0.1, 0.0),
    "CH": (0.3, 0.0, 0.7, 0.0, 0.0),
    "SS": (0.2, 0.0, 0.0, 0.5, 0.0),
    "nn": (0.35, 0.0, 0.0, 0.15, 0.0),
    "RR": (0.35, 0.0, 0.6, 0.0, 0.0),
    "aa": (1.0, 0.0, 0.0, 0.1, 0.0),
    "E": (0.7, 0.0, 0.0, 0.6, 0.0),
    "ih": (0.45, 0.0, 0.0, 0.8, 0.0),
    "oh": (0.75, 0.0, 0.8, 0.0, 0.0),
    "ou": (0.4, 0.0, 1.0, 0.0, 0.0),
}

VISEME_TARGETS: Final[npt.NDArray[np.float32]] = np.array(
    [_TARGETS[v] for v in VISEMES], dtype=np.float32
)
"""Row ``i`` holds the articulation target of ``VISEMES[i]``."""

VISEME_INDEX: Final[dict[str, int]] = {v: i for i, v in enumerate(VISEMES)}


def viseme_of(phone: str) -> int:
    """Index into :data:`VISEMES` of a recognised phone; unknown phones count as silence."""
    return VISEME_INDEX[PHONE_TO_VISEME.get(phone.upper(), "sil")]
