"""Participant side of avatar-relay: the Host Mode contract and synchronized playout.

Depends only on :mod:`avatar_relay.protocol` and livekit rtc, so a participant can install it
without the relay.
"""

from .host_mode import (
    ConversationState,
    HostModeController,
    HostModeStats,
    PlayoutChunk,
    StateChangedEvent,
    StateReason,
)
from .receiver import AvatarReceiver, ReceiverEvent, is_relay
from .sync import (
    ConversationEvent,
    ConversationEventKind,
    PlayoutSync,
    ReceiverStats,
    SyncedFrame,
)

__all__ = [
    "AvatarReceiver",
    "ConversationEvent",
    "ConversationEventKind",
    "ConversationState",
    "HostModeController",
    "HostModeStats",
    "PlayoutChunk",
    "PlayoutSync",
    "ReceiverEvent",
    "ReceiverStats",
    "StateChangedEvent",
    "StateReason",
    "SyncedFrame",
    "is_relay",
]
