"""Motion sources: PCM audio in, encoded animation frames out (see :mod:`agent.motion.base`).

:func:`create_motion_source` builds a source by name from :data:`MOTION_SOURCES`; a new source
is one more entry there (a factory taking keyword arguments).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from agent.motion.base import (
    MotionAudioError,
    MotionError,
    MotionFrame,
    MotionSource,
    MotionStream,
    MotionStreamEnd,
    MotionStreamInfo,
)
from agent.motion.clapperboard import (
    ClapperboardMotionSource,
    clapperboard_audio,
    detect_tone_onsets,
)
from agent.motion.embedded import EmbeddedMotionSource


def _spatius(**kwargs: Any) -> MotionSource:
    # imported on demand: the vendor SDK is an optional extra
    from agent.motion.spatius import SpatiusMotionSource

    return SpatiusMotionSource(**kwargs)


MOTION_SOURCES: Mapping[str, Callable[..., MotionSource]] = MappingProxyType(
    {
        "embedded": EmbeddedMotionSource,
        "clapperboard": ClapperboardMotionSource,
        "spatius": _spatius,
    }
)
"""Motion source name -> factory (keyword arguments only)."""


def create_motion_source(name: str, **kwargs: Any) -> MotionSource:
    """Build the motion source called ``name``; ValueError lists the valid names."""
    factory = MOTION_SOURCES.get(name)
    if factory is None:
        raise ValueError(
            f"unknown motion source {name!r}; valid: {', '.join(sorted(MOTION_SOURCES))}"
        )
    return factory(**kwargs)


__all__ = [
    "MOTION_SOURCES",
    "ClapperboardMotionSource",
    "EmbeddedMotionSource",
    "MotionAudioError",
    "MotionError",
    "MotionFrame",
    "MotionSource",
    "MotionStream",
    "MotionStreamEnd",
    "MotionStreamInfo",
    "clapperboard_audio",
    "create_motion_source",
    "detect_tone_onsets",
]
