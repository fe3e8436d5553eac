"""The relay: conversations, pacing against audio, control and publishing for one room."""

from .auth import Authorizer, UnauthorizedError
from .control import RelayControl, speak_pcm
from .conversation import (
    Animation,
    AnimationChanged,
    ConversationEvent,
    InvalidTransitionError,
    Phase,
    PhaseChanged,
    PlaybackResult,
)
from .handle import ConversationHandle
from .interfaces import AudioSink, Clock, EmissionAnchor, Publisher
from .player import ConversationPlayer, PlayerOptions, RelayBusyError, RelayClosedError
from .room_relay import RoomRelay
from .session_output import AvatarAudioOutput, AvatarRelay
from .tts import EspeakAgentTTS, EspeakTts, Pcm, TtsError, WavError, parse_wav

__all__ = [
    "Animation",
    "AnimationChanged",
    "AudioSink",
    "Clock",
    "ConversationEvent",
    "ConversationPlayer",
    "EmissionAnchor",
    "InvalidTransitionError",
    "Phase",
    "PhaseChanged",
    "PlayerOptions",
    "Publisher",
    "AvatarAudioOutput",
    "AvatarRelay",
    "Authorizer",
    "ConversationHandle",
    "EspeakAgentTTS",
    "EspeakTts",
    "Pcm",
    "PlaybackResult",
    "RelayBusyError",
    "RelayClosedError",
    "RelayControl",
    "RoomRelay",
    "TtsError",
    "UnauthorizedError",
    "WavError",
    "parse_wav",
    "speak_pcm",
]
