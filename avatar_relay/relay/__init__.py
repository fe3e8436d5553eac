"""The relay: one room's avatar (audio track + paced animation), control, and the drop-in
``AvatarRelay`` for livekit-agents voice agents.
"""

from .auth import UnauthorizedError
from .conversation import PlaybackResult
from .handle import ConversationHandle
from .room_relay import RelayBusyError, RelayClosedError, RoomRelay
from .session_output import AvatarAudioOutput, AvatarRelay
from .tts import EspeakAgentTTS

__all__ = [
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
