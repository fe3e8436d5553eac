"""Typed protocol messages: what the relay tells participants about a conversation.

Every message belongs to one conversation (``conversation_id``) and carries ``seq``, a
per-conversation sequence number that starts at 0 with :class:`ConversationStart`, and
``sent_at_us``, the sender's wall clock in microseconds when the message left the relay.
Media time is counted in animation frames: frame ``k`` is presented at ``k / fps`` seconds
after the conversation's first audio sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AudioTransport = Literal["track", "data", "both"]
"""Where a conversation's audio travels: the relay's audio track, protocol messages, or both."""


@dataclass(frozen=True, slots=True)
class ConversationStart:
    """Opens a conversation; declares how to decode and time everything that follows."""

    conversation_id: str
    seq: int
    codec: str
    """Animation codec name; ``arkit-u8`` is embedded, others (``spatius``) are opaque."""
    fps: float
    """Animation frames per second of this conversation."""
    channels: tuple[str, ...]
    """Blendshape channel names in payload order (empty for opaque codecs)."""
    sample_rate: int
    """Sample rate of the conversation's audio (Hz, mono s16le when sent as data)."""
    audio_track: str
    """Name of the relay's audio track that carries this conversation's audio."""
    audio_transport: AudioTransport = "track"
    lookahead_ms: int = 0
    """How long the relay delays audio behind motion generation (informational)."""
    sent_at_us: int = 0


@dataclass(frozen=True, slots=True)
class AnimationFrames:
    """Consecutive animation frames ``first_frame, first_frame + 1, ...`` of a conversation."""

    conversation_id: str
    seq: int
    first_frame: int
    frames: tuple[bytes, ...]
    """Codec payloads, one per frame, passed through unchanged."""
    sent_at_us: int = 0


@dataclass(frozen=True, slots=True)
class AudioData:
    """A chunk of the conversation's audio as PCM s16le mono (audio transport ``data``)."""

    conversation_id: str
    seq: int
    first_sample: int
    """Index of the chunk's first sample since the conversation's first sample."""
    pcm: bytes
    sent_at_us: int = 0


@dataclass(frozen=True, slots=True)
class ConversationEnd:
    """The conversation's last audio and frame have been sent."""

    conversation_id: str
    seq: int
    frame_count: int
    """Total animation frames sent for the conversation (0 when audio-only)."""
    audio_samples: int
    """Total audio samples of the conversation."""
    sent_at_us: int = 0


@dataclass(frozen=True, slots=True)
class Interrupt:
    """The conversation was cut short: stop playback and discard what is buffered for it."""

    conversation_id: str
    seq: int
    sent_at_us: int = 0


@dataclass(frozen=True, slots=True)
class AudioOnly:
    """From now on the conversation has no animation; its audio plays on."""

    conversation_id: str
    seq: int
    reason: str
    """Why: ``motion_empty``, ``motion_failed``, ``motion_stalled`` or ``motion_unavailable``."""
    sent_at_us: int = 0


@dataclass(frozen=True, slots=True)
class Idle:
    """Heartbeat between conversations, optionally with idle motion frames.

    ``frames`` use ``codec``/``channels`` declared here; they are not bound to any audio.
    """

    seq: int
    """Sender-wide sequence number of idle messages."""
    codec: str
    fps: float
    channels: tuple[str, ...]
    first_frame: int
    frames: tuple[bytes, ...] = field(default_factory=tuple)
    sent_at_us: int = 0


Message = (
    ConversationStart | AnimationFrames | AudioData | ConversationEnd | Interrupt | AudioOnly | Idle
)
"""Every message of protocol version 1."""
