"""One conversation of the embedded generator: PCM in, ``arkit-u8`` frames out.

Timing contract: frame ``k`` covers the audio ``[k/25, (k+1)/25)`` s of the conversation and is
emitted as soon as audio up to ``(k+1)/25 s + lookahead`` has been pushed; ``flush()`` emits the
frames still owed, so a conversation of ``n`` samples has exactly ``ceil(n / (rate/25))`` frames.
Audio is processed in the order of those deadlines (and in fixed 40 ms blocks for recognition),
so the output depends only on the audio, the seed and the settings, never on how the audio was
split into chunks.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from avatar_relay.motion.base import (
    MotionError,
    MotionFrame,
    MotionStream,
    MotionStreamEnd,
    MotionStreamInfo,
)
from avatar_relay.motion.embedded.acoustic import (
    ANTICIPATION_S,
    AcousticArticulation,
    SpectralFeatures,
)
from avatar_relay.motion.embedded.articulation import Smoother, blend
from avatar_relay.motion.embedded.channels import CH, CHANNELS, OPEN, articulation_to_weights
from avatar_relay.motion.embedded.idle import IdleMotion
from avatar_relay.motion.embedded.recognizer import PhoneRecognizer, PhoneSegment
from avatar_relay.motion.embedded.visemes import VISEME_INDEX, VISEME_TARGETS
from avatar_relay.motion.frame_queue import FrameQueue
from avatar_relay.motion.pcm import SampleBuffer, check_sample_rate, decode_s16le
from avatar_relay.protocol.blendshapes import ARKIT_CODEC, ArkitU8Codec
from avatar_relay.protocol.constants import DEFAULT_FPS

logger = logging.getLogger("avatar_relay.motion")

_SIL: Final = VISEME_INDEX["sil"]
_EXPRESSIVE_ATTACK: Final = 0.12
_EXPRESSIVE_RELEASE: Final = 0.05


class EmbeddedMotionStream(MotionStream):
    """Lip sync for one conversation; create it with ``EmbeddedMotionSource.open_stream``."""

    def __init__(
        self,
        *,
        conversation_id: str,
        sample_rate: int,
        lookahead_ms: int,
        seed: int,
        recognizer: PhoneRecognizer | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self._spf = check_sample_rate(sample_rate)
        self.conversation_id = conversation_id
        self.sample_rate = sample_rate
        self._lookahead = round(lookahead_ms * sample_rate / 1000)
        self._lead = min(self._lookahead, round(ANTICIPATION_S * sample_rate))
        self._info = MotionStreamInfo(ARKIT_CODEC, float(DEFAULT_FPS), CHANNELS, lookahead_ms)
        self._codec = ArkitU8Codec(CHANNELS)
        self._buffer = SampleBuffer()
        self._features = SpectralFeatures(sample_rate, self._spf)
        self._acoustic = AcousticArticulation()
        self._smoother = Smoother()
        self._idle = IdleMotion(seed)
        self._recognizer = recognizer
        self._on_done = on_done
        self._queue = FrameQueue()
        self._state: Literal["open", "flushed", "interrupted", "closed"] = "open"
        self._frames_out = 0
        self._blocks_done = 0
        self._expressive = 0.0
        self.dropped_bytes = 0
        """Audio pushed after an interrupt or close, ignored."""

    @property
    def info(self) -> MotionStreamInfo:
        return self._info

    @property
    def frames_emitted(self) -> int:
        return self._frames_out

    def push_audio(self, pcm: bytes) -> None:
        if self._state == "flushed":
            raise MotionError("push_audio after flush")
        samples = decode_s16le(pcm)
        if self._state != "open":
            self.dropped_bytes += len(pcm)
            return
        if samples.size == 0:
            return
        self._buffer.append(samples)
        self._advance()

    def flush(self) -> None:
        if self._state != "open":
            return
        self._state = "flushed"
        total = self._buffer.end
        if self._recognizer is not None:
            start = self._blocks_done * self._spf
            self._recognizer.process(self._buffer.window(start, max(start, total)), last=True)
        owed = -(-total // self._spf) - self._frames_out
        if owed > 0:
            self._emit(owed)
        self._queue.end(MotionStreamEnd())
        self._release()

    async def interrupt(self) -> None:
        if self._state in ("open", "flushed"):
            self._state = "interrupted"
        self._queue.abandon()
        self._release()

    async def aclose(self) -> None:
        if self._state != "interrupted":
            self._state = "closed"
        self._queue.abandon()
        self._release()

    def __aiter__(self) -> AsyncIterator[MotionFrame | MotionStreamEnd]:
        return self._queue.iterate()

    def _release(self) -> None:
        if self._recognizer is not None:
            self._recognizer.close()
            self._recognizer = None
        if self._on_done is not None:
            on_done, self._on_done = self._on_done, None
            on_done()

    def _advance(self) -> None:
        """Run the block and frame deadlines that the pushed audio has reached, in time order."""
        total = self._buffer.end
        while True:
            frame_due = (self._frames_out + 1) * self._spf + self._lookahead
            block_due = (self._blocks_done + 1) * self._spf
            if self._recognizer is not None and block_due <= total and block_due <= frame_due:
                start = self._blocks_done * self._spf
                self._recognizer.process(self._buffer.window(start, block_due))
                self._blocks_done += 1
                continue
            if frame_due > total:
                return
            if self._recognizer is None:
                ready = (total - self._lookahead) // self._spf - self._frames_out
            else:
                ready = 1
            self._emit(ready)

    def _emit(self, count: int) -> None:
        """Compute, encode and queue the next ``count`` frames."""
        k0 = self._frames_out
        start = k0 * self._spf + self._lead
        windows = self._buffer.window(start, start + count * self._spf).reshape(count, self._spf)
        targets = self._acoustic.targets(self._features.compute(windows))
        segments = self._recognizer.segments if self._recognizer is not None else ()
        params = np.empty_like(targets)
        expressive = np.empty(count, dtype=np.float32)
        for i in range(count):
            viseme = _viseme_at(segments, (k0 + i + 0.5) / DEFAULT_FPS)
            params[i] = self._smoother.step(blend(targets[i], viseme))
            rate = _EXPRESSIVE_ATTACK if params[i, OPEN] > self._expressive else _EXPRESSIVE_RELEASE
            self._expressive += rate * (float(params[i, OPEN]) - self._expressive)
            expressive[i] = self._expressive
        weights = articulation_to_weights(params) + self._idle.weights(k0, count)
        weights[:, CH["headPitch"]] += 0.08 * expressive
        weights[:, CH["browInnerUp"]] += 0.2 * expressive
        weights[:, CH["browOuterUpLeft"]] += 0.12 * expressive
        weights[:, CH["browOuterUpRight"]] += 0.12 * expressive
        for i, payload in enumerate(self._codec.encode_rows(weights)):
            self._queue.put(MotionFrame(k0 + i, payload))
        self._frames_out += count
        keep = self._frames_out * self._spf + self._lead
        if self._recognizer is not None:
            keep = min(keep, self._blocks_done * self._spf)
        self._buffer.trim(keep)


def _viseme_at(segments: tuple[PhoneSegment, ...], t: float) -> npt.NDArray[np.float32] | None:
    """The articulation target of the recognised phone sounding at ``t``, if one is known."""
    for seg in reversed(segments):
        if seg.start_s <= t < seg.end_s:
            return None if seg.viseme == _SIL else VISEME_TARGETS[seg.viseme]
        if seg.end_s <= t:
            return None
    return None
