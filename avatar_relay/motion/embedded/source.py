"""The embedded generator: offline, CPU-only lip sync, the relay's default motion source."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Sequence
from typing import Any, Final

from avatar_relay.motion.base import MotionError, MotionSource, MotionStream, MotionStreamInfo
from avatar_relay.motion.embedded.channels import CHANNELS
from avatar_relay.motion.embedded.idle import IdleMotion
from avatar_relay.motion.embedded.recognizer import PhoneRecognizer, new_decoder
from avatar_relay.motion.embedded.stream import EmbeddedMotionStream
from avatar_relay.motion.pcm import check_sample_rate
from avatar_relay.protocol.blendshapes import ARKIT_CODEC, ArkitU8Codec
from avatar_relay.protocol.constants import DEFAULT_FPS

logger = logging.getLogger("avatar_relay.motion")

DEFAULT_LOOKAHEAD_MS: Final = 100
MAX_LOOKAHEAD_MS: Final = 120
"""The relay delays audio by the lookahead; more than this is noticeable in conversation."""
MAX_IDLE_DECODERS: Final = 4


class EmbeddedMotionSource(MotionSource):
    """Audio-driven lip sync: acoustic cues always, pocketsphinx phones when asked for.

    ``recognition=True`` (settings ``motion.recognition``, the optional extra ``recognition``)
    adds phones recognised by pocketsphinx. They arrive 140-190 ms after they begin, so at the
    lookaheads the relay allows (up to :data:`MAX_LOOKAHEAD_MS`) they seldom arrive in time;
    they cost about 13x the CPU time (docs/BENCHMARKS.md), hence off by default.
    """

    name = "embedded"

    def __init__(
        self,
        *,
        lookahead_ms: int = DEFAULT_LOOKAHEAD_MS,
        seed: int = 0,
        recognition: bool = False,
        max_lookahead_ms: int = MAX_LOOKAHEAD_MS,
    ) -> None:
        if not 0 <= lookahead_ms <= max_lookahead_ms:
            raise ValueError(f"lookahead_ms must be in [0, {max_lookahead_ms}], got {lookahead_ms}")
        self.lookahead_ms = lookahead_ms
        self.seed = seed
        self.recognition = recognition
        self._idle = IdleMotion(seed)
        self._idle_codec = ArkitU8Codec(CHANNELS)
        self._decoders: list[Any] = []
        self._closed = False

    async def open_stream(self, conversation_id: str, sample_rate: int) -> MotionStream:
        if self._closed:
            raise MotionError("motion source is closed")
        check_sample_rate(sample_rate)
        recognizer: PhoneRecognizer | None = None
        decoder: Any = None
        if self.recognition:
            try:
                decoder = (
                    self._decoders.pop() if self._decoders else await asyncio.to_thread(new_decoder)
                )
                recognizer = PhoneRecognizer(decoder, sample_rate)
            except MotionError as exc:
                logger.warning(
                    "no phone recognition for this conversation",
                    extra={"conversation_id": conversation_id, "error": str(exc)},
                )

        def give_back() -> None:
            if decoder is not None and recognizer is not None and not recognizer.failed:
                if not self._closed and len(self._decoders) < MAX_IDLE_DECODERS:
                    self._decoders.append(decoder)

        stream_seed = (self.seed * 1_000_003 + zlib.crc32(conversation_id.encode())) & 0x7FFFFFFF
        return EmbeddedMotionStream(
            conversation_id=conversation_id,
            sample_rate=sample_rate,
            lookahead_ms=self.lookahead_ms,
            seed=stream_seed,
            recognizer=recognizer,
            on_done=give_back,
        )

    def idle_info(self) -> MotionStreamInfo:
        return MotionStreamInfo(ARKIT_CODEC, float(DEFAULT_FPS), CHANNELS, 0)

    def idle_frames(self, first_frame: int, count: int) -> Sequence[bytes]:
        if first_frame < 0 or count < 0:
            raise ValueError("first_frame and count must be >= 0")
        weights = self._idle.weights(first_frame, count)
        return [self._idle_codec.encode(row) for row in weights]

    async def aclose(self) -> None:
        self._closed = True
        self._decoders.clear()
