"""avatar-relay: a talking avatar for every participant of a LiveKit room.

The public API, by the side that uses it:

- voice agents: :class:`AvatarRelay` (the ``AgentSession`` drop-in), :class:`RoomRelay`;
- workers: :func:`build_server`, :func:`load_settings`, :class:`Settings`;
- participants: :class:`AvatarReceiver`, :class:`HostModeController`;
- everyone: :mod:`avatar_relay.protocol` (the wire format) and :mod:`avatar_relay.motion`.

Names are imported on first use, so a participant-only install (without the ``agent``
extra) can import the client and the protocol.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import AvatarReceiver, HostModeController
    from .motion import MotionSource
    from .relay import AvatarRelay, RoomRelay
    from .settings import Settings, SettingsError, load_settings, make_settings
    from .worker import build_server

__version__ = "0.2.0"

_EXPORTS = {
    "AvatarRelay": "relay",
    "RoomRelay": "relay",
    "AvatarReceiver": "client",
    "HostModeController": "client",
    "MotionSource": "motion",
    "Settings": "settings",
    "SettingsError": "settings",
    "load_settings": "settings",
    "make_settings": "settings",
    "build_server": "worker",
}

__all__ = [
    "AvatarReceiver",
    "AvatarRelay",
    "HostModeController",
    "MotionSource",
    "RoomRelay",
    "Settings",
    "SettingsError",
    "__version__",
    "build_server",
    "load_settings",
    "make_settings",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'avatar_relay' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
