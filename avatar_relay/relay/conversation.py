"""One utterance on its way through the relay: its audio, its motion and its bookkeeping."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..motion.base import MotionStream, MotionStreamInfo
from ..protocol import AudioOnly, ConversationStart
from .log import ctx, logger

Int16Array = npt.NDArray[np.int16]

AudioOnlyReason = Literal["motion_empty", "motion_failed", "motion_stalled", "motion_unavailable"]


def new_conversation_id() -> str:
    """Fresh, unguessable, short: 16 hex characters."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class PlaybackResult:
    """How a conversation ended, as the voice agent's playback accounting needs it."""

    conversation_id: str
    played_seconds: float
    interrupted: bool


class Conversation:
    """Audio in (from a voice agent, a WAV, TTS), motion frames in, state for the pump."""

    def __init__(self, *, sample_rate: int, conversation_id: str | None = None) -> None:
        self.id = conversation_id or new_conversation_id()
        self.sample_rate = sample_rate
        self.motion: MotionStream | None = None
        self.motion_info: MotionStreamInfo | None = None
        self.start_message: ConversationStart | None = None
        self.audio_only_message: AudioOnly | None = None
        self.start_sent_at = 0.0
        self.audio_only_reason: AudioOnlyReason | None = None
        self.seq = 0
        self.started = False
        self.interrupted = False
        self.input_closed = False
        self.received_samples = 0
        self.frames: dict[int, bytes] = {}
        self.motion_ended = False
        self.frames_sent = 0
        self.played_seconds = 0.0
        """How much was heard when it was interrupted (set at the interrupt)."""
        self.first_input_at: float | None = None
        """Monotonic time of the first audio pushed (for the first-audio latency metric)."""
        self.pacer_task: asyncio.Task[None] | None = None
        self._chunks: deque[Int16Array] = deque()
        self._motion_backlog: list[Int16Array] = []
        self._changed = asyncio.Event()
        self._frames_changed = asyncio.Event()
        self._motion_settled = asyncio.Event()
        self.result: asyncio.Future[PlaybackResult] = asyncio.get_running_loop().create_future()

    # -- sequence numbers -------------------------------------------------------------------
    def next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    # -- audio input ------------------------------------------------------------------------
    def push(self, pcm: Int16Array) -> None:
        """Append conversation audio (int16 mono at the relay's rate) and feed the motion source."""
        if self.input_closed or self.interrupted or len(pcm) == 0:
            return
        if self.first_input_at is None:
            self.first_input_at = time.monotonic()
        self._chunks.append(pcm)
        self.received_samples += len(pcm)
        self._feed_motion(pcm)
        self._changed.set()

    def pad_silence(self, samples: int) -> None:
        """Keep the timeline continuous when the producer is slower than real time."""
        self.push(np.zeros(samples, dtype=np.int16))

    def close_input(self) -> None:
        if self.input_closed:
            return
        self.input_closed = True
        self._flush_motion()
        self._changed.set()

    def take(self, samples: int) -> Int16Array:
        """Remove up to ``samples`` samples from the front of the buffer."""
        parts: list[Int16Array] = []
        need = samples
        while need > 0 and self._chunks:
            head = self._chunks[0]
            if len(head) <= need:
                parts.append(self._chunks.popleft())
                need -= len(head)
            else:
                parts.append(head[:need])
                self._chunks[0] = head[need:]
                need = 0
        if not parts:
            return np.zeros(0, dtype=np.int16)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def wait_for_input(self, total_samples: int, timeout: float | None) -> bool:
        """Wait until ``total_samples`` were received, input closed or interrupted.

        Returns False on timeout (the producer is behind real time).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not (self.received_samples >= total_samples or self.input_closed or self.interrupted):
            self._changed.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    # -- motion -----------------------------------------------------------------------------
    def _feed_motion(self, pcm: Int16Array) -> None:
        if self.audio_only_reason is not None:
            return
        if self.motion is None:
            self._motion_backlog.append(pcm)  # the stream is still opening
            return
        try:
            self.motion.push_audio(pcm.tobytes())
        except Exception as exc:
            # Motion never costs audio: the conversation goes on without animation.
            logger.warning("motion source refused audio", extra=ctx("", self.id, error=repr(exc)))
            self.mark_audio_only("motion_failed")

    async def wait_motion_settled(self, timeout: float) -> None:
        """Wait until the motion stream is open or has failed (bounded)."""
        try:
            await asyncio.wait_for(self._motion_settled.wait(), timeout)
        except TimeoutError:
            self.mark_audio_only("motion_unavailable")

    def attach_motion(self, stream: MotionStream) -> None:
        """The motion stream is open: hand it the audio that arrived meanwhile."""
        self.motion = stream
        self.motion_info = stream.info
        self._motion_settled.set()
        backlog, self._motion_backlog = self._motion_backlog, []
        for pcm in backlog:
            self._feed_motion(pcm)
        if self.input_closed:
            self._flush_motion()

    def _flush_motion(self) -> None:
        if self.motion is not None and self.audio_only_reason is None:
            try:
                self.motion.flush()
            except Exception as exc:
                logger.warning("motion flush failed", extra=ctx("", self.id, error=repr(exc)))
                self.mark_audio_only("motion_failed")

    def add_frame(self, index: int, payload: bytes) -> None:
        if self.audio_only_reason is None:
            self.frames[index] = payload
            self._frames_changed.set()

    def end_motion(self) -> None:
        self.motion_ended = True
        self._motion_settled.set()
        self._frames_changed.set()

    def mark_audio_only(self, reason: AudioOnlyReason) -> None:
        if self.audio_only_reason is None:
            self.audio_only_reason = reason
            self.frames.clear()
            self._motion_backlog.clear()
            self._frames_changed.set()
            self._motion_settled.set()

    async def wait_frames_changed(self, timeout: float | None) -> None:
        self._frames_changed.clear()
        try:
            await asyncio.wait_for(self._frames_changed.wait(), timeout)
        except TimeoutError:
            pass

    async def wait_interrupted(self) -> None:
        while not self.interrupted:
            self._changed.clear()
            await self._changed.wait()

    def interrupt(self) -> None:
        self.interrupted = True
        self._motion_settled.set()
        self._changed.set()
        self._frames_changed.set()

    def finish(self, played_seconds: float) -> None:
        if not self.result.done():
            self.result.set_result(
                PlaybackResult(self.id, max(played_seconds, 0.0), self.interrupted)
            )
