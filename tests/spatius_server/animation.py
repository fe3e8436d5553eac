"""Deterministic stand-in animation: one small payload per 40 ms of received audio.

The real service's animation format is opaque to the SDK and to the relay, so the local server
only needs something deterministic whose size follows the audio: frame ``k`` covers samples
``k * spf .. (k + 1) * spf - 1`` where ``spf = sample_rate / fps``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

FPS = 25
"""Animation frame rate of the Spatius service."""

ANIMATION_FIELD = 4
"""Field of ServerResponseAnimation that carries the animation bytes (``animation``, bytes).

The vendor's descriptor (``spatialreal`` 0.2.2, ``proto/generated/message_pb2.py``) declares
1 connection_id, 2 req_id, 3 end, 4 animation, 5 avatar_id. The ``spatius`` 1.1.1 SDK's
descriptor declares only 1-3, so to it 4 and 5 are unknown fields it hands over untouched.
tests/test_spatius_server.py checks these numbers against the installed SDK's descriptor.
"""

AVATAR_ID_FIELD = 5
"""Field of ServerResponseAnimation naming the avatar (``avatar_id``, string)."""

_FRAME = struct.Struct("<IHH")
"""frame index, RMS level (0..65535), zero crossings in the window."""


def frame_count(samples: int, sample_rate: int) -> int:
    """Frames the server answers for a request of ``samples`` samples (at least one)."""
    return max(1, math.ceil(samples * FPS / sample_rate))


def encode_frame(index: int, window: bytes) -> bytes:
    """Frame bytes for one window of PCM s16le mono."""
    count = len(window) // 2
    values = struct.unpack(f"<{count}h", window[: count * 2]) if count else ()
    rms = math.sqrt(sum(v * v for v in values) / count) if count else 0.0
    crossings = sum(1 for a, b in zip(values[:-1], values[1:], strict=True) if (a < 0) != (b < 0))
    return _FRAME.pack(index, min(65535, round(rms * 2)), min(65535, crossings))


def decode_frame(data: bytes) -> tuple[int, int, int]:
    """(index, level, crossings) of frame bytes made by :func:`encode_frame`."""
    index, level, crossings = _FRAME.unpack(data)
    return index, level, crossings


@dataclass
class FrameCutter:
    """Cuts one request's audio into frame windows as it arrives.

    The last complete window is held back until more audio or the end arrives, so that the
    final frame can carry ``end=True`` (frames after an end are dropped by the clients).
    """

    sample_rate: int
    _buffer: bytearray = field(default_factory=bytearray)
    _next_index: int = 0

    @property
    def window_bytes(self) -> int:
        return self.sample_rate // FPS * 2

    def push(self, pcm: bytes) -> list[bytes]:
        """Frames that are complete and certainly not the last one."""
        self._buffer.extend(pcm)
        frames: list[bytes] = []
        size = self.window_bytes
        while len(self._buffer) > size:
            frames.append(encode_frame(self._next_index, bytes(self._buffer[:size])))
            del self._buffer[:size]
            self._next_index += 1
        return frames

    def finish(self) -> list[bytes]:
        """The remaining frames; the last element is the final frame."""
        frames: list[bytes] = []
        size = self.window_bytes
        while self._buffer or (not frames and self._next_index == 0):
            frames.append(encode_frame(self._next_index, bytes(self._buffer[:size])))
            del self._buffer[:size]
            self._next_index += 1
        return frames


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def frame_bytes(animation: bytes) -> bytes | None:
    """The animation bytes of a serialized ServerResponseAnimation (field 4); None if absent."""
    pos = 0
    while pos < len(animation):
        key, pos = _read_varint(animation, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _read_varint(animation, pos)
        elif wire_type == 2:
            size, pos = _read_varint(animation, pos)
            if number == ANIMATION_FIELD:
                return animation[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    return None
