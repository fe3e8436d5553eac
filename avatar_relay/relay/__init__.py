"""The relay: one room's avatar (audio track + paced animation), control, and the drop-in
``AvatarRelay`` for livekit-agents voice agents.
"""

from .auth import UnauthorizedError
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
from .tts import EspeakAgentTTS

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
    "ConversationHandle",
    "EspeakAgentTTS",
    "PlaybackResult",
    "RelayBusyError",
    "RelayClosedError",
    "RoomRelay",
    "UnauthorizedError",
]
