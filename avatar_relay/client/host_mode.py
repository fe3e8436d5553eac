"""The Host Mode client contract: buffer a conversation's audio and frames, play them in sync.

Pure logic with no clock and no asyncio: the caller pulls audio with :meth:`playout` at its
own pace and gets back, with every chunk, the animation frame for exactly that audio position.
A renderer driven by it is therefore in sync by construction.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from livekit import rtc

from avatar_relay.protocol import DEFAULT_FPS, MAX_FPS, SUPPORTED_SAMPLE_RATES

logger = logging.getLogger("avatar_relay.client")

ConversationState = Literal["idle", "playing", "paused", "ended", "interrupted"]
"""``ended`` and ``interrupted`` are passed through on the way back to ``idle``."""

StateReason = Literal[
    "playbackStart", "playbackEnd", "userAction", "fallbackMode", "networkError", "serverError"
]
"""Why a state changed; ``fallbackMode`` marks the switch of a conversation to audio-only."""

HostModeEvent = Literal["state_changed"]

BYTES_PER_SAMPLE = 2


@dataclass(frozen=True, slots=True)
class StateChangedEvent:
    """Emitted as ``state_changed`` whenever the playback state changes."""

    state: ConversationState
    """The new state."""
    previous: ConversationState
    """The state before this change."""
    reason: StateReason
    """Why it changed."""
    conversation_id: str | None
    """The conversation concerned (None when the controller became idle with none)."""


@dataclass(frozen=True, slots=True)
class PlayoutChunk:
    """What :meth:`HostModeController.playout` returns for one pull of audio."""

    audio: bytes
    """Exactly the requested number of samples, PCM s16le mono (zeros where starved)."""
    conversation_id: str | None
    """Conversation the audio belongs to; None when idle or paused with nothing playing."""
    frame: bytes | None
    """Animation frame for the chunk's first sample (or the last one before it, held)."""
    frame_index: int | None
    """Index of :attr:`frame`; None when no frame is presented."""
    position: int
    """Sample index, within the conversation, of the chunk's first sample (0 when idle)."""
    target_frame: int | None
    """Index of the frame that belongs to :attr:`position`, whether it arrived or not."""
    starved_samples: int
    """Samples of silence padded in because the conversation's audio had not arrived."""
    audio_only: bool
    """The conversation plays without animation (fallback)."""
    state: ConversationState
    """Controller state after this pull."""


@dataclass(slots=True)
class HostModeStats:
    """Counters of everything the controller accepted, dropped or missed."""

    frames_received: int = 0
    """Frames stored for the current conversation."""
    frames_dropped: int = 0
    """Frames dropped because their conversation id was not the current one."""
    frames_ignored: int = 0
    """Frames ignored because their conversation had switched to audio-only."""
    frames_late: int = 0
    """Playout positions whose frame had not arrived when their audio played."""
    frames_expired: int = 0
    """Frames that arrived after their audio had already been played."""
    frames_duplicate: int = 0
    """Frames whose index was already stored."""
    frames_overflow: int = 0
    """Frames dropped because the frame buffer was full."""
    audio_overflow_samples: int = 0
    """Audio samples dropped because the audio buffer was full."""
    audio_gap_samples: int = 0
    """Silence inserted for gaps announced by ``first_sample``."""
    audio_overlap_samples: int = 0
    """Audio samples dropped because ``first_sample`` said they were already buffered."""
    starved_samples: int = 0
    """Silence played because a conversation's audio arrived too slowly."""


@dataclass(slots=True)
class _Conversation:
    cid: str
    start_sample: int
    """Position of the first sample fed (non-zero when joined mid-conversation)."""
    audio: bytearray = field(default_factory=bytearray)
    played: int = 0
    """Samples of real audio played (position = start_sample + played)."""
    fed: int = 0
    """Samples fed so far, including inserted gap silence."""
    frames: dict[int, bytes] = field(default_factory=dict)
    next_append: int = 0
    ended: bool = False
    audio_only: bool = False
    started: bool = False
    late_marked: int = -1
    """Highest target frame already counted as late (each position is counted once)."""

    @property
    def position(self) -> int:
        return self.start_sample + self.played


class HostModeController(rtc.EventEmitter[HostModeEvent]):
    """Host Mode: conversations of audio plus animation frames, played out in sync.

    A conversation starts with the first audio after construction, after ``end=True`` or
    after :meth:`interrupt`. Frames for any other conversation id are dropped and counted.
    Memory is bounded: audio beyond ``max_buffered_seconds`` and frames beyond
    ``max_buffered_frames`` are dropped and counted, never queued without limit.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        fps: float = DEFAULT_FPS,
        max_buffered_seconds: float = 30.0,
        max_buffered_frames: int = 2048,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        super().__init__()
        if sample_rate not in SUPPORTED_SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SUPPORTED_SAMPLE_RATES}")
        if max_buffered_seconds <= 0 or max_buffered_frames < 1:
            raise ValueError("buffer limits must be positive")
        self._sample_rate = sample_rate
        self._fps = DEFAULT_FPS * 1.0
        self.fps = fps
        self._max_samples = int(max_buffered_seconds * sample_rate)
        self._max_frames = max_buffered_frames
        self._new_id = id_factory or (lambda: uuid.uuid4().hex)
        self._queue: deque[_Conversation] = deque()
        """Conversations with audio still to play; the head is the one playing."""
        self._open: _Conversation | None = None
        """The conversation accepting audio (None after end=True or interrupt)."""
        self._buffered_samples = 0
        self._buffered_frames = 0
        self._paused = False
        self._state: ConversationState = "idle"
        self._last_frame: tuple[int, bytes] | None = None
        self.stats = HostModeStats()

    # -- configuration -------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def fps(self) -> float:
        """Animation frame rate used to map audio positions to frame indices."""
        return self._fps

    @fps.setter
    def fps(self, value: float) -> None:
        if not 0 < value <= MAX_FPS:
            raise ValueError(f"fps must be in (0, {MAX_FPS}]")
        self._fps = float(value)

    @property
    def state(self) -> ConversationState:
        return self._state

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def buffered_samples(self) -> int:
        """Audio samples waiting to be played, over every queued conversation."""
        return self._buffered_samples

    @property
    def buffered_frames(self) -> int:
        return self._buffered_frames

    @property
    def max_buffered_samples(self) -> int:
        """Most audio samples held at once (``max_buffered_seconds`` at the sample rate)."""
        return self._max_samples

    # -- the contract --------------------------------------------------------------------------

    def yield_audio_data(
        self, audio: bytes, end: bool = False, *, first_sample: int | None = None
    ) -> str:
        """Buffer PCM s16le mono audio at :attr:`sample_rate`; return its conversation id.

        ``first_sample`` (an extension) is the position of the audio's first sample in the
        conversation: it lets a late joiner start mid-conversation, fills gaps with counted
        silence and trims audio that overlaps what was already fed.
        """
        if len(audio) % BYTES_PER_SAMPLE:
            raise ValueError("audio must be whole s16le samples (even byte count)")
        if first_sample is not None and first_sample < 0:
            raise ValueError("first_sample must be non-negative")
        conv = self._open
        if conv is None:
            conv = _Conversation(cid=self._new_id(), start_sample=first_sample or 0)
            self._open = conv
            self._queue.append(conv)
        elif first_sample is not None:
            expected = conv.start_sample + conv.fed
            if first_sample > expected:
                # The gap is filled with silence up to the buffer's free room only: the rest
                # would be dropped by _append anyway, and allocating it first let one far-off
                # index cost gigabytes (issue 14). Position still advances past the gap.
                gap = first_sample - expected
                self.stats.audio_gap_samples += gap
                fill = min(gap, max(0, self._max_samples - self._buffered_samples))
                self.stats.audio_overflow_samples += gap - fill
                self._append(conv, bytes(fill * BYTES_PER_SAMPLE))
                conv.fed += gap - fill
            elif first_sample < expected:
                overlap = min(expected - first_sample, len(audio) // BYTES_PER_SAMPLE)
                self.stats.audio_overlap_samples += overlap
                audio = audio[overlap * BYTES_PER_SAMPLE :]
        self._append(conv, audio)
        if end:
            conv.ended = True
            self._open = None
        return conv.cid

    def yield_frames_data(
        self,
        frames: Sequence[bytes] | None,
        conversation_id: str,
        first_frame: int | None = None,
    ) -> None:
        """Store animation frames of the current conversation by frame index.

        Frames are numbered ``first_frame, first_frame + 1, ...`` (or continue the previous
        call's numbering when ``first_frame`` is None). An empty or None ``frames`` switches
        the conversation to audio-only: its buffered and later frames are ignored.
        """
        if first_frame is not None and first_frame < 0:
            raise ValueError("first_frame must be non-negative")
        conv = self._current()
        count = len(frames) if frames else 0
        if conv is None or conv.cid != conversation_id:
            self.stats.frames_dropped += count
            return
        if not frames:
            if not conv.audio_only:
                self._set_audio_only(conv)
            return
        if conv.audio_only:
            self.stats.frames_ignored += count
            return
        index = conv.next_append if first_frame is None else first_frame
        conv.next_append = max(conv.next_append, index + count)
        played_target = self._target(conv) if conv.started else -1
        for offset, payload in enumerate(frames):
            k = index + offset
            if k in conv.frames:
                self.stats.frames_duplicate += 1
            elif k < played_target:
                self.stats.frames_expired += 1
            elif self._buffered_frames >= self._max_frames:
                self.stats.frames_overflow += 1
            else:
                conv.frames[k] = bytes(payload)
                self._buffered_frames += 1
                self.stats.frames_received += 1

    def get_current_conversation_id(self) -> str | None:
        """The conversation that accepts frames: the open one, else the one still playing."""
        conv = self._current()
        return conv.cid if conv is not None else None

    def interrupt(self, *, reason: StateReason = "userAction") -> str | None:
        """Stop playback and discard every buffered sample and frame; return the stopped id."""
        current = self._current()
        stopped = current.cid if current is not None else None
        had = bool(self._queue) or self._open is not None
        self._queue.clear()
        self._open = None
        self._buffered_samples = 0
        self._buffered_frames = 0
        self._last_frame = None
        if had:
            self._set_state("interrupted", reason, stopped)
            self._set_state("paused" if self._paused else "idle", reason, None)
        return stopped

    def pause(self) -> None:
        """Stop consuming audio; buffers are kept and :meth:`playout` returns silence."""
        if self._paused:
            return
        self._paused = True
        self._set_state("paused", "userAction", self._playing_id())

    def resume(self) -> None:
        """Continue where :meth:`pause` stopped."""
        if not self._paused:
            return
        self._paused = False
        head = self._queue[0] if self._queue else None
        if head is not None and head.started:
            self._set_state("playing", "userAction", head.cid)
        else:
            self._set_state("idle", "userAction", None)

    def playout(self, num_samples: int) -> PlayoutChunk:
        """Pull the next ``num_samples`` of audio and the frame for its first sample."""
        if num_samples <= 0:
            raise ValueError("num_samples must be positive")
        silence = bytes(num_samples * BYTES_PER_SAMPLE)
        if self._paused:
            return self._chunk(silence, self._playing_conv(), 0, advance=False)
        self._retire_finished()
        if not self._queue:
            return self._chunk(silence, None, 0, advance=False)
        conv = self._queue[0]
        if not conv.started:
            conv.started = True
            reason: StateReason = "fallbackMode" if conv.audio_only else "playbackStart"
            self._set_state("playing", reason, conv.cid)
        want = num_samples * BYTES_PER_SAMPLE
        take = bytes(conv.audio[:want])
        del conv.audio[:want]
        got = len(take) // BYTES_PER_SAMPLE
        starved = 0 if conv.ended else num_samples - got
        self.stats.starved_samples += starved
        chunk = self._chunk(take.ljust(want, b"\x00"), conv, starved, advance=True)
        conv.played += got
        self._buffered_samples -= got
        self._prune_frames(conv)
        if conv.ended and not conv.audio:
            self._retire_finished()
        return chunk

    # -- internals -----------------------------------------------------------------------------

    def _current(self) -> _Conversation | None:
        if self._open is not None:
            return self._open
        return self._queue[-1] if self._queue else None

    def _playing_conv(self) -> _Conversation | None:
        head = self._queue[0] if self._queue else None
        return head if head is not None and head.started else None

    def _playing_id(self) -> str | None:
        conv = self._playing_conv()
        return conv.cid if conv is not None else None

    def _append(self, conv: _Conversation, audio: bytes) -> None:
        samples = len(audio) // BYTES_PER_SAMPLE
        room = max(0, self._max_samples - self._buffered_samples)
        if samples > room:
            self.stats.audio_overflow_samples += samples - room
            logger.debug(
                "audio buffer full, dropping samples",
                extra={"conversation_id": conv.cid, "dropped": samples - room},
            )
            samples = room
            audio = audio[: room * BYTES_PER_SAMPLE]
        conv.audio += audio
        conv.fed += samples
        self._buffered_samples += samples

    def _target(self, conv: _Conversation) -> int:
        return int(conv.position * self._fps // self._sample_rate)

    def _set_audio_only(self, conv: _Conversation) -> None:
        conv.audio_only = True
        self.stats.frames_ignored += len(conv.frames)
        self._buffered_frames -= len(conv.frames)
        conv.frames.clear()
        if self._queue and self._queue[0] is conv:
            self._last_frame = None
        self._set_state(self._state, "fallbackMode", conv.cid, force=True)

    def _chunk(
        self, audio: bytes, conv: _Conversation | None, starved: int, *, advance: bool
    ) -> PlayoutChunk:
        if conv is None:
            return PlayoutChunk(audio, None, None, None, 0, None, 0, False, self._state)
        target = self._target(conv)
        frame: tuple[int, bytes] | None = None
        if not conv.audio_only:
            if target in conv.frames:
                frame = (target, conv.frames[target])
            else:
                if advance and target > conv.late_marked:
                    conv.late_marked = target
                    self.stats.frames_late += 1
                held = [k for k in conv.frames if k <= target]
                if held:
                    k = max(held)
                    frame = (k, conv.frames[k])
                elif self._last_frame is not None and self._last_frame[0] <= target:
                    frame = self._last_frame
            if advance and frame is not None:
                self._last_frame = frame
        return PlayoutChunk(
            audio=audio,
            conversation_id=conv.cid,
            frame=frame[1] if frame else None,
            frame_index=frame[0] if frame else None,
            position=conv.position,
            target_frame=target,
            starved_samples=starved,
            audio_only=conv.audio_only,
            state=self._state,
        )

    def _prune_frames(self, conv: _Conversation) -> None:
        """Forget frames before the one now presented; they can never be shown again."""
        if self._last_frame is None:
            return
        keep_from = self._last_frame[0]
        stale = [k for k in conv.frames if k < keep_from]
        for k in stale:
            del conv.frames[k]
        self._buffered_frames -= len(stale)

    def _retire_finished(self) -> None:
        """Close every queued conversation whose end was given and whose audio has played."""
        while self._queue and self._queue[0].ended and not self._queue[0].audio:
            conv = self._queue.popleft()
            self._buffered_frames -= len(conv.frames)
            self._last_frame = None
            if not conv.started:
                self._set_state("playing", "playbackStart", conv.cid)
            self._set_state("ended", "playbackEnd", conv.cid)
            if not self._queue:
                self._set_state("idle", "playbackEnd", None)

    def _set_state(
        self,
        state: ConversationState,
        reason: StateReason,
        conversation_id: str | None,
        *,
        force: bool = False,
    ) -> None:
        previous = self._state
        if previous == state and not force:
            return
        self._state = state
        self.emit("state_changed", StateChangedEvent(state, previous, reason, conversation_id))
