"""One utterance on its way through the relay, as an explicit state machine.

Its phase moves only forward, and only through :meth:`Conversation._move`::

    queued ─► opening_motion ─► playing ─► ending ─► ended
       │            │              │          │
       └────────────┴──────────────┴──────────┴────► interrupted
    opening_motion ─► ended   (the producer ended it without any audio)

Independently, its animation goes ``pending ─► animated ─► audio_only`` (or straight from
``pending`` to ``audio_only``), only through :meth:`Conversation.mark_audio_only` and
:meth:`Conversation.attach_motion`. Every transition is reported once, as a
:class:`PhaseChanged` or :class:`AnimationChanged` event, to the one listener given at
construction; the relay derives its playback events, protocol notices and metrics from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from livekit.agents.utils.audio import AudioByteStream

from ..motion.base import MotionStream, MotionStreamInfo
from .interfaces import Clock, Int16Array
from .log import ctx, logger

AudioOnlyReason = Literal["motion_empty", "motion_failed", "motion_stalled", "motion_unavailable"]

CHUNK_MS = 10
"""Audio is taken from a conversation in chunks of this length unless the player asks for
larger ones (a multiple of it: WebRTC's own frame size)."""


def new_conversation_id() -> str:
    """Fresh, unguessable, short: 16 hex characters."""
    return secrets.token_hex(8)


class Phase(enum.Enum):
    QUEUED = "queued"
    """Waiting behind other conversations; its motion stream opens meanwhile."""
    OPENING_MOTION = "opening_motion"
    """First in line; the audio waits (bounded) until its motion stream is open or failed."""
    PLAYING = "playing"
    """Its audio is going into the sink; the start message has been sent."""
    ENDING = "ending"
    """All its audio is in the sink and all its frames are sent (the end message goes out
    now); its playout remains."""
    ENDED = "ended"
    INTERRUPTED = "interrupted"


class Animation(enum.Enum):
    PENDING = "pending"
    """The motion stream is not open yet."""
    ANIMATED = "animated"
    AUDIO_ONLY = "audio_only"


_FINAL = frozenset({Phase.ENDED, Phase.INTERRUPTED})
_ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.QUEUED: frozenset({Phase.OPENING_MOTION, Phase.INTERRUPTED}),
    Phase.OPENING_MOTION: frozenset({Phase.PLAYING, Phase.ENDED, Phase.INTERRUPTED}),
    Phase.PLAYING: frozenset({Phase.ENDING, Phase.INTERRUPTED}),
    Phase.ENDING: frozenset({Phase.ENDED, Phase.INTERRUPTED}),
    Phase.ENDED: frozenset(),
    Phase.INTERRUPTED: frozenset(),
}


class InvalidTransitionError(RuntimeError):
    """A conversation was asked to move to a phase it cannot reach from where it is."""


@dataclass(frozen=True, slots=True)
class PlaybackResult:
    """How a conversation ended, as the voice agent's playback accounting needs it."""

    conversation_id: str
    played_seconds: float
    interrupted: bool


@dataclass(frozen=True, slots=True)
class PhaseChanged:
    """A conversation moved from one phase to the next."""

    conversation_id: str
    old: Phase
    new: Phase
    at: float
    """Clock time of the transition."""
    played_seconds: float
    """Audio emitted so far (final in ``ended``/``interrupted``)."""


@dataclass(frozen=True, slots=True)
class AnimationChanged:
    """A conversation's animation became available, or was given up."""

    conversation_id: str
    old: Animation
    new: Animation
    reason: AudioOnlyReason | None
    """Why it is audio-only; None when it became animated."""
    phase: Phase
    """The phase it was in (an ``audio_only`` before ``playing`` is announced at the start)."""


ConversationEvent = PhaseChanged | AnimationChanged


class Conversation:
    """Audio in (from a voice agent, a WAV, TTS), motion frames in, one phase at a time."""

    def __init__(
        self,
        *,
        sample_rate: int,
        clock: Clock,
        on_event: Callable[[Conversation, ConversationEvent], None],
        conversation_id: str | None = None,
        chunk_samples: int | None = None,
    ) -> None:
        self.id = conversation_id or new_conversation_id()
        self.sample_rate = sample_rate
        self.chunk = chunk_samples or sample_rate * CHUNK_MS // 1000
        self._clock = clock
        self._on_event = on_event
        self._phase = Phase.QUEUED
        self._started = False
        self._animation = Animation.PENDING
        self._audio_only_reason: AudioOnlyReason | None = None
        self._interrupt_requested = False
        self._seq = 0
        self._played_seconds = 0.0
        # audio input, framed into whole chunks
        self._bytes = AudioByteStream(sample_rate, 1, samples_per_channel=self.chunk)
        self._chunks: deque[Int16Array] = deque()
        self._queued = 0
        """Samples pushed and not yet taken by the player."""
        self._taken = asyncio.Event()
        self._input_closed = False
        self._received = 0
        self._padded = 0
        self._first_input_at: float | None = None
        self._last_input_at = clock()
        self._changed = asyncio.Event()
        # motion
        self._motion: MotionStream | None = None
        self._motion_info: MotionStreamInfo | None = None
        self._motion_backlog: list[Int16Array] = []
        self._motion_ended = False
        self._motion_settled = asyncio.Event()
        self._frames: dict[int, bytes] = {}
        self._frames_changed = asyncio.Event()
        self.frames_sent = 0
        self.result: asyncio.Future[PlaybackResult] = asyncio.get_running_loop().create_future()

    # -- state ------------------------------------------------------------------------------
    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def animation(self) -> Animation:
        return self._animation

    @property
    def audio_only_reason(self) -> AudioOnlyReason | None:
        return self._audio_only_reason

    @property
    def started(self) -> bool:
        """Its start message was sent (it reached ``playing``)."""
        return self._phase in (Phase.PLAYING, Phase.ENDING) or (
            self._phase in _FINAL and self._started
        )

    @property
    def done(self) -> bool:
        return self._phase in _FINAL

    @property
    def interrupt_requested(self) -> bool:
        return self._interrupt_requested

    def _move(self, new: Phase, played_seconds: float = 0.0) -> None:
        """The one place where a conversation changes phase."""
        old = self._phase
        if new not in _ALLOWED[old]:
            raise InvalidTransitionError(f"conversation {self.id}: {old.value} -> {new.value}")
        self._phase = new
        if new is Phase.PLAYING:
            self._started = True
        if new in _FINAL:
            self._played_seconds = max(played_seconds, 0.0)
            self._motion_settled.set()
            self._frames_changed.set()
            self._changed.set()
            self._taken.set()
        self._on_event(self, PhaseChanged(self.id, old, new, self._clock(), self._played_seconds))
        if new in _FINAL and not self.result.done():
            interrupted = new is Phase.INTERRUPTED
            self.result.set_result(PlaybackResult(self.id, self._played_seconds, interrupted))

    def open_motion(self) -> None:
        self._move(Phase.OPENING_MOTION)

    def start_playing(self) -> None:
        self._move(Phase.PLAYING)

    def begin_ending(self) -> None:
        self._move(Phase.ENDING)

    def end(self, played_seconds: float) -> None:
        self._move(Phase.ENDED, played_seconds)

    def abort(self, played_seconds: float) -> None:
        """Interrupted (by request, failure or shutdown); a no-op once it is final."""
        if not self.done:
            self._move(Phase.INTERRUPTED, played_seconds)

    def request_interrupt(self) -> None:
        """Ask the relay to stop it; the relay moves it to ``interrupted``."""
        self._interrupt_requested = True
        self._motion_settled.set()
        self._changed.set()
        self._taken.set()
        self._frames_changed.set()

    async def wait_interrupt_requested(self) -> None:
        while not self._interrupt_requested:
            self._changed.clear()
            await self._changed.wait()

    # -- sequence numbers -------------------------------------------------------------------
    @property
    def seq(self) -> int:
        """The sequence number of the next message."""
        return self._seq

    def next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def advance_seq(self, count: int) -> None:
        """``count`` messages were numbered from :attr:`seq` on."""
        self._seq += count

    # -- audio input ------------------------------------------------------------------------
    @property
    def input_closed(self) -> bool:
        return self._input_closed

    @property
    def received_samples(self) -> int:
        return self._received

    @property
    def padded_samples(self) -> int:
        """Silence inserted because the producer was slower than real time."""
        return self._padded

    @property
    def first_input_at(self) -> float | None:
        return self._first_input_at

    @property
    def last_input_at(self) -> float:
        """Clock time of the last push or of the open (for the input idle timeout)."""
        return self._last_input_at

    def push(self, pcm: Int16Array) -> None:
        """Append audio (int16 mono at the relay's rate) and feed the motion source."""
        if self._input_closed or self._interrupt_requested or self.done or len(pcm) == 0:
            return
        now = self._clock()
        if self._first_input_at is None:
            self._first_input_at = now
        self._last_input_at = now
        self._append(pcm)

    def pad_silence(self, samples: int) -> None:
        """Keep the timeline continuous when the producer is slower than real time.

        Padding is not input: it does not delay the input idle timeout.
        """
        if not self._input_closed and samples > 0:
            silence = np.zeros(samples, dtype=np.int16)
            self._padded += samples
            self._append(silence)  # fed to the motion too: the face keeps time

    def _append(self, pcm: Int16Array) -> None:
        # Each chunk views its own fresh AudioFrame and is never written: no copy per chunk.
        self._received += len(pcm)
        for frame in self._bytes.push(pcm.tobytes()):
            self._queue_chunk(np.frombuffer(frame.data, dtype=np.int16))
        self._feed_motion(pcm)
        self._changed.set()

    def close_input(self) -> None:
        if self._input_closed:
            return
        self._input_closed = True
        for frame in self._bytes.flush():
            self._queue_chunk(np.frombuffer(frame.data, dtype=np.int16))
        self._flush_motion()
        self._changed.set()

    def _queue_chunk(self, chunk: Int16Array) -> None:
        self._chunks.append(chunk)
        self._queued += len(chunk)

    def take_chunk(self) -> Int16Array | None:
        """The next whole chunk (the last one may be shorter), or None if none is ready."""
        if not self._chunks:
            return None
        chunk = self._chunks.popleft()
        self._queued -= len(chunk)
        self._taken.set()
        return chunk

    @property
    def queued_samples(self) -> int:
        """Audio pushed and not yet taken by the player."""
        return self._queued

    async def wait_queued_below(self, samples: int) -> None:
        """Wait until fewer than ``samples`` wait to be played, or no more will be taken.

        Lets a producer that holds all of its audio feed at playback pace, so that the motion
        source works while the audio plays instead of on all of it at once (issue 11, item 5).
        """
        while self._queued >= samples and not (
            self.done or self._interrupt_requested or self._input_closed
        ):
            self._taken.clear()
            await self._taken.wait()

    async def wait_for_input(self, total_samples: int, timeout: float | None) -> bool:
        """Wait until ``total_samples`` were received, input closed or interrupt requested.

        Returns False on timeout (the producer is behind real time).
        """
        try:
            async with asyncio.timeout(timeout):
                while not (
                    self._received >= total_samples
                    or self._input_closed
                    or self._interrupt_requested
                ):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    # -- motion -----------------------------------------------------------------------------
    @property
    def motion(self) -> MotionStream | None:
        return self._motion

    @property
    def motion_info(self) -> MotionStreamInfo | None:
        return self._motion_info

    @property
    def motion_ended(self) -> bool:
        return self._motion_ended

    @property
    def frames(self) -> dict[int, bytes]:
        """Frames received and not yet sent, by index (the pacer takes them out)."""
        return self._frames

    def _feed_motion(self, pcm: Int16Array) -> None:
        if self._animation is Animation.AUDIO_ONLY:
            return
        if self._motion is None:
            self._motion_backlog.append(pcm)  # the stream is still opening
            return
        try:
            self._motion.push_audio(pcm.tobytes())
        except Exception as exc:
            # Motion never costs audio: the conversation goes on without animation.
            logger.warning("motion source refused audio", extra=ctx("", self.id, error=repr(exc)))
            self.mark_audio_only("motion_failed")

    async def wait_motion_settled(self, timeout: float) -> None:
        """Wait until the motion stream is open or has failed (bounded)."""
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it may swallow a cancel
                await self._motion_settled.wait()
        except TimeoutError:
            self.mark_audio_only("motion_unavailable")

    def attach_motion(self, stream: MotionStream) -> None:
        """The motion stream is open: hand it the audio that arrived meanwhile."""
        self._motion = stream
        self._motion_info = stream.info
        self._motion_settled.set()
        if self._animation is not Animation.PENDING:
            return
        self._set_animation(Animation.ANIMATED, None)
        backlog, self._motion_backlog = self._motion_backlog, []
        for pcm in backlog:
            self._feed_motion(pcm)
        if self._input_closed:
            self._flush_motion()

    def _flush_motion(self) -> None:
        if self._motion is not None and self._animation is Animation.ANIMATED:
            try:
                self._motion.flush()
            except Exception as exc:
                logger.warning("motion flush failed", extra=ctx("", self.id, error=repr(exc)))
                self.mark_audio_only("motion_failed")

    def add_frame(self, index: int, payload: bytes) -> None:
        if self._animation is not Animation.AUDIO_ONLY:
            self._frames[index] = payload
            self._frames_changed.set()

    def end_motion(self) -> None:
        self._motion_ended = True
        self._motion_settled.set()
        self._frames_changed.set()

    def mark_audio_only(self, reason: AudioOnlyReason) -> None:
        """Give up on animation for the rest of the conversation (once; later calls are no-ops)."""
        if self._animation is Animation.AUDIO_ONLY:
            return
        self._audio_only_reason = reason
        self._frames.clear()
        self._motion_backlog.clear()
        self._frames_changed.set()
        self._motion_settled.set()
        self._set_animation(Animation.AUDIO_ONLY, reason)

    def _set_animation(self, new: Animation, reason: AudioOnlyReason | None) -> None:
        old, self._animation = self._animation, new
        self._on_event(self, AnimationChanged(self.id, old, new, reason, self._phase))

    async def wait_frames_changed(self, timeout: float | None) -> None:
        self._frames_changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._frames_changed.wait()
