"""The one interface every source of animation implements.

A relay opens one :class:`MotionStream` per conversation, pushes the conversation's PCM audio
into it as it arrives, and iterates encoded animation frames out of it. The stream ends with a
:class:`MotionStreamEnd` marker, the way livekit-agents' audio receivers end a segment.
A motion source never knows how its frames are relayed.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass


class MotionError(Exception):
    """A motion source failed; the relay keeps the audio and marks the conversation audio-only."""


class MotionAudioError(ValueError):
    """Audio pushed into a motion stream is unusable (odd byte count, wrong rate, ...)."""


@dataclass(frozen=True, slots=True)
class MotionStreamInfo:
    """How the frames of a stream are encoded and timed."""

    codec: str
    """Codec name written into ConversationStart (``arkit-u8``, ``spatius``, ...)."""
    fps: float
    channels: tuple[str, ...]
    """Blendshape channel names in payload order; empty for opaque codecs."""
    lookahead_ms: int
    """Audio the source needs beyond a frame's time before it can emit that frame."""


@dataclass(frozen=True, slots=True)
class MotionFrame:
    """One encoded animation frame; frame ``index`` belongs at ``index / fps`` seconds."""

    index: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class MotionStreamEnd:
    """The stream has no more frames.

    ``audio_only`` is true when the source produced no animation for the conversation
    (empty animation is the Host Mode fallback signal).
    """

    audio_only: bool = False
    reason: str = ""
    failed: bool = False
    """With ``audio_only``: the source failed (refused connection, quota, service error),
    as opposed to having no animation for this audio."""


class MotionStream(abc.ABC):
    """Motion for one conversation: audio in, encoded frames out."""

    @property
    @abc.abstractmethod
    def info(self) -> MotionStreamInfo: ...

    @abc.abstractmethod
    def push_audio(self, pcm: bytes) -> None:
        """Feed PCM s16le mono at the stream's sample rate. Raises MotionAudioError."""

    @abc.abstractmethod
    def flush(self) -> None:
        """The utterance's audio is complete: emit the remaining frames, then the end marker."""

    @abc.abstractmethod
    async def interrupt(self) -> None:
        """Abandon the conversation: stop producing frames and end the iteration."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release everything the stream holds. Safe to call more than once."""

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[MotionFrame | MotionStreamEnd]: ...


class MotionSource(abc.ABC):
    """A factory of motion streams, one per conversation, plus idle motion between them."""

    name: str = "motion"

    @abc.abstractmethod
    async def open_stream(self, conversation_id: str, sample_rate: int) -> MotionStream:
        """Start motion for a conversation. Raises MotionError if the source is unavailable."""

    @abc.abstractmethod
    def idle_info(self) -> MotionStreamInfo | None:
        """Codec and timing of idle frames, or None if the source has no idle motion."""

    @abc.abstractmethod
    def idle_frames(self, first_frame: int, count: int) -> Sequence[bytes]:
        """Encoded idle frames ``first_frame .. first_frame + count - 1``; deterministic."""

    def prewarm(self, sample_rate: int) -> None:  # noqa: B027 - an optional hook
        """Get ready for conversations at ``sample_rate`` in the background (never blocks)."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook; most sources hold nothing
        """Release shared resources (models, connections)."""
