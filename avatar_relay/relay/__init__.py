"""The relay: conversations, pacing against audio, control and publishing for one room."""

from .auth import Authorizer, UnauthorizedError
from .control import RelayControl, speak_pcm
from .conversation import PlaybackResult
from .handle import ConversationHandle
from .room_relay import RelayBusyError, RelayClosedError, RoomRelay
from .session_output import AvatarAudioOutput, AvatarRelay
from .tts import EspeakAgentTTS, EspeakTts, Pcm, TtsError, WavError, parse_wav

__all__ = [
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
