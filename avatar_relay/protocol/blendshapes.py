"""Blendshape channel names and the embedded ``arkit-u8`` animation codec.

A frame is one byte per declared channel: weights in [0, 1] map to 0..255; head-pose channels
(names starting with ``head``) hold angles normalised to [-1, 1] and map to 0..255 around 127.5.
One byte per channel keeps a speaking avatar well under 3 KB/s at 25 fps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

ARKIT_CODEC: Final = "arkit-u8"

ARKIT_52: Final[tuple[str, ...]] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward",
    "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft",
    "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft",
    "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft",
    "noseSneerRight", "tongueOut",
)  # fmt: skip
"""The 52 ARKit face blendshapes, in Apple's documented order."""

HEAD_POSE: Final[tuple[str, ...]] = ("headPitch", "headYaw", "headRoll")
"""Head rotation channels, normalised to [-1, 1] (1 = the renderer's maximum angle)."""

KNOWN_CHANNELS: Final = frozenset(ARKIT_52 + HEAD_POSE)


def is_signed_channel(name: str) -> bool:
    """Head-pose channels are signed; every ARKit blendshape is a weight in [0, 1]."""
    return name.startswith("head")


class ArkitU8Codec:
    """Quantizes blendshape weight vectors of a fixed channel list to one byte per channel."""

    name: Final = ARKIT_CODEC

    def __init__(self, channels: Sequence[str]) -> None:
        if not channels:
            raise ValueError("arkit-u8 needs at least one channel")
        unknown = [c for c in channels if c not in KNOWN_CHANNELS]
        if unknown:
            raise ValueError(f"unknown blendshape channels: {unknown}")
        if len(set(channels)) != len(channels):
            raise ValueError("duplicate blendshape channels")
        self.channels: tuple[str, ...] = tuple(channels)
        signed = np.array([is_signed_channel(c) for c in self.channels])
        self._offset = np.where(signed, 1.0, 0.0).astype(np.float32)
        self._scale = np.where(signed, 127.5, 255.0).astype(np.float32)
        self._lo = np.where(signed, -1.0, 0.0).astype(np.float32)

    def encode(self, weights: npt.ArrayLike) -> bytes:
        """Encode one frame; values outside a channel's range are clipped, NaN is 0."""
        w = np.asarray(weights, dtype=np.float32)
        if w.shape != (len(self.channels),):
            raise ValueError(f"expected {len(self.channels)} weights, got shape {w.shape}")
        return self._quantize(w).tobytes()

    def encode_rows(self, rows: npt.ArrayLike) -> list[bytes]:
        """Encode many frames at once (one row each): the per-call cost is paid once."""
        w = np.asarray(rows, dtype=np.float32)
        if w.ndim != 2 or w.shape[1] != len(self.channels):
            raise ValueError(f"expected rows of {len(self.channels)} weights, got {w.shape}")
        packed = self._quantize(w).tobytes()
        width = len(self.channels)
        return [packed[i : i + width] for i in range(0, len(packed), width)]

    def _quantize(self, w: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
        # Plain ufuncs: np.clip and np.nan_to_num cost more in Python overhead than in work,
        # and this runs for every frame of every speaking room.
        w = np.where(np.isnan(w), np.float32(0.0), w)
        clipped = np.minimum(np.maximum(w, self._lo), np.float32(1.0))
        quantized: npt.NDArray[np.uint8] = np.rint((clipped + self._offset) * self._scale).astype(
            np.uint8
        )
        return quantized

    def decode(self, payload: bytes) -> npt.NDArray[np.float32]:
        """Decode one frame back to float weights (exact to 1/255, or 1/127.5 for head pose)."""
        if len(payload) != len(self.channels):
            raise ValueError(
                f"arkit-u8 frame has {len(payload)} bytes, expected {len(self.channels)}"
            )
        q = np.frombuffer(payload, dtype=np.uint8).astype(np.float32)
        return q / self._scale - self._offset
