"""Participant side of avatar-relay: the Host Mode contract and synchronized playout.

Depends only on :mod:`agent.protocol` and livekit rtc, so a participant can install it
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

__all__ = [
    "ConversationState",
    "HostModeController",
    "HostModeStats",
    "PlayoutChunk",
    "StateChangedEvent",
    "StateReason",
]
