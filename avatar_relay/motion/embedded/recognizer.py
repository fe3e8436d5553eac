"""Streaming phone recognition with pocketsphinx allphone decoding (en-us model in its wheel).

Audio arrives in fixed blocks at the stream's rate, is resampled to 16 kHz with soxr (the
acoustic model's rate) and decoded incrementally. After every block the current best phone
segmentation (a partial hypothesis) is kept as a snapshot, so what a frame may use depends only
on how much audio had been pushed, never on wall-clock time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from avatar_relay.motion.base import MotionError
from avatar_relay.motion.embedded.visemes import viseme_of

logger = logging.getLogger("avatar_relay.motion")

RECOGNIZER_RATE: Final = 16_000
PS_FRAME_S: Final = 0.01
"""pocketsphinx analyses 100 frames per second."""
KEEP_S: Final = 1.5
"""Segments ending longer ago than this are forgotten (frames never look that far back)."""


@dataclass(frozen=True, slots=True)
class PhoneSegment:
    """A recognised phone ``[start_s, end_s)`` and its viseme index."""

    phone: str
    viseme: int
    start_s: float
    end_s: float


MISSING_EXTRA: Final = "phone recognition needs the extra: pip install 'avatar-relay[recognition]'"


def new_decoder() -> Any:
    """A pocketsphinx allphone decoder on the bundled en-us model (about 30 MB, 0.1 s)."""
    try:
        import pocketsphinx  # type: ignore[import-untyped]  # the wheel ships no type hints
    except ImportError as exc:  # the optional extra `recognition`
        raise MotionError(MISSING_EXTRA) from exc
    try:
        return pocketsphinx.Decoder(
            hmm=pocketsphinx.get_model_path("en-us/en-us"),
            allphone=pocketsphinx.get_model_path("en-us/en-us-phone.lm.bin"),
            lm=None,
            loglevel="FATAL",
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise MotionError(f"pocketsphinx failed to load: {exc}") from exc


class PhoneRecognizer:
    """Feeds one utterance to a decoder block by block and keeps the latest segmentation."""

    def __init__(self, decoder: Any, sample_rate: int) -> None:
        self._decoder = decoder
        self._resampler: Any = None
        if sample_rate != RECOGNIZER_RATE:
            try:
                import soxr  # type: ignore[import-untyped]  # soxr ships no type hints
            except ImportError as exc:  # the optional extra `recognition`
                raise MotionError(MISSING_EXTRA) from exc
            self._resampler = soxr.ResampleStream(
                sample_rate, RECOGNIZER_RATE, 1, dtype="float32", quality="LQ"
            )
        self._segments: tuple[PhoneSegment, ...] = ()
        self._started = False
        self.failed = False

    @property
    def segments(self) -> tuple[PhoneSegment, ...]:
        """The segmentation after the last block (partial until :meth:`finish`)."""
        return self._segments

    def process(self, block: npt.NDArray[np.float32], last: bool = False) -> None:
        """Decode one block of float samples in [-1, 1] at the stream's rate."""
        if self.failed:
            return
        try:
            if not self._started:
                self._decoder.start_utt()
                self._started = True
            pcm16 = (
                block if self._resampler is None else self._resampler.resample_chunk(block, last)
            )
            if len(pcm16):
                raw = np.clip(np.rint(pcm16 * 32767.0), -32768, 32767).astype(np.int16)
                self._decoder.process_raw(raw.tobytes(), False, False)
            if last:
                self._decoder.end_utt()
                self._started = False
            self._segments = self._read_segments()
        except (RuntimeError, ValueError) as exc:
            self.failed = True
            logger.warning(
                "phone recognition failed; acoustic cues only", extra={"error": str(exc)}
            )

    def _read_segments(self) -> tuple[PhoneSegment, ...]:
        out: list[PhoneSegment] = []
        for seg in self._decoder.seg() or ():
            start = seg.start_frame * PS_FRAME_S
            end = (seg.end_frame + 1) * PS_FRAME_S
            out.append(PhoneSegment(seg.word, viseme_of(seg.word), start, end))
        if out:
            horizon = out[-1].end_s - KEEP_S
            out = [s for s in out if s.end_s >= horizon]
        return tuple(out)

    def close(self) -> None:
        """End a running utterance so the decoder can be reused."""
        if self._started and not self.failed:
            try:
                self._decoder.end_utt()
            except RuntimeError:
                self.failed = True
        self._started = False
