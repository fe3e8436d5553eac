"""The fixed channel list of the embedded generator and its articulation-to-blendshape map.

The generator reasons in five articulation parameters (jaw opening, lip closure, rounding,
spreading, lower lip to teeth); a fixed linear map turns them into ARKit blendshapes, so every
other module stays independent of the channel layout.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_relay.protocol.blendshapes import HEAD_POSE

MOUTH_CHANNELS: Final[tuple[str, ...]] = (
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthPressLeft", "mouthPressRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
)  # fmt: skip
FACE_CHANNELS: Final[tuple[str, ...]] = (
    "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
)  # fmt: skip
CHANNELS: Final[tuple[str, ...]] = MOUTH_CHANNELS + FACE_CHANNELS + HEAD_POSE
"""Every channel the embedded generator sends, in payload order."""

CH: Final[dict[str, int]] = {name: i for i, name in enumerate(CHANNELS)}
"""Channel name -> payload index."""

PARAMS: Final[tuple[str, ...]] = ("open", "close", "round", "spread", "labiodental")
"""Articulation parameters, each in [0, 1]."""
OPEN, CLOSE, ROUND, SPREAD, LABIODENTAL = range(len(PARAMS))

MAX_JAW: Final = 0.7
"""jawOpen at full speech opening; 1.0 would be a yawn."""


def articulation_to_weights(params: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Map articulation rows (n, 5) to mouth blendshape rows (n, len(CHANNELS)).

    Lip closure is expressed the ARKit way: ``mouthClose`` follows ``jawOpen`` so the lips meet
    while the jaw stays where it is, and the lip-parting shapes are scaled down by the closure.
    """
    p = np.clip(np.asarray(params, dtype=np.float32).reshape(-1, len(PARAMS)), 0.0, 1.0)
    jaw = MAX_JAW * p[:, OPEN]
    close = p[:, CLOSE]
    rnd = p[:, ROUND]
    spread = p[:, SPREAD]
    labio = p[:, LABIODENTAL]
    apart = 1.0 - np.maximum(close, labio)
    out = np.zeros((p.shape[0], len(CHANNELS)), dtype=np.float32)
    out[:, CH["jawOpen"]] = jaw
    out[:, CH["mouthClose"]] = close * jaw
    out[:, CH["mouthFunnel"]] = 0.5 * rnd * apart * (0.4 + p[:, OPEN])
    out[:, CH["mouthPucker"]] = 0.7 * rnd
    out[:, [CH["mouthSmileLeft"], CH["mouthSmileRight"]]] = (0.35 * spread)[:, None]
    out[:, [CH["mouthStretchLeft"], CH["mouthStretchRight"]]] = (0.3 * spread)[:, None]
    out[:, [CH["mouthPressLeft"], CH["mouthPressRight"]]] = (0.5 * close)[:, None]
    out[:, CH["mouthRollLower"]] = 0.5 * labio + 0.15 * close
    out[:, CH["mouthRollUpper"]] = 0.1 * labio + 0.15 * close
    out[:, CH["mouthShrugLower"]] = 0.2 * close
    out[:, CH["mouthShrugUpper"]] = 0.2 * labio
    lower = 0.4 * jaw * apart
    upper = 0.25 * jaw * apart + 0.25 * labio
    out[:, [CH["mouthLowerDownLeft"], CH["mouthLowerDownRight"]]] = lower[:, None]
    out[:, [CH["mouthUpperUpLeft"], CH["mouthUpperUpRight"]]] = upper[:, None]
    return out
