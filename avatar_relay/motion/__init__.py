"""Motion sources: PCM audio in, encoded animation frames out (see :mod:`avatar_relay.motion.base`).

:func:`create_motion_source` builds a source by name from :data:`MOTION_SOURCES`; a new source
is one more entry there (a factory taking keyword arguments).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from avatar_relay.motion.base import (
    MotionAudioError,
    MotionError,
    MotionFrame,
    MotionSource,
    MotionStream,
    MotionStreamEnd,
    MotionStreamInfo,
)
from avatar_relay.motion.clapperboard import (
    ClapperboardMotionSource,
    clapperboard_audio,
    detect_tone_onsets,
)
from avatar_relay.motion.embedded import EmbeddedMotionSource

if TYPE_CHECKING:
    from avatar_relay.settings import Settings


def _spatius(**kwargs: Any) -> MotionSource:
    # imported on demand: the vendor SDK is an optional extra
    from avatar_relay.motion.spatius import SpatiusMotionSource

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


def motion_source_from_settings(settings: Settings, name: str | None = None) -> MotionSource:
    """Build the configured (or named) motion source.

    ``spatius`` takes its credentials and endpoints from the SDK's ``SPATIUS_*`` environment
    variables. A source that cannot be built (missing variables, the optional SDK not
    installed) raises ValueError naming the cause, like an unknown name does.
    """
    if name is not None and not name.strip():
        # An empty name from a control request used to select the default silently.
        raise ValueError(f"motion source name is empty; valid: {', '.join(sorted(MOTION_SOURCES))}")
    chosen = settings.motion.source if name is None else name
    kwargs: dict[str, object] = {}
    if chosen == "embedded":
        kwargs = {
            "lookahead_ms": settings.motion.lookahead_ms,
            "seed": settings.motion.seed,
            "recognition": settings.motion.recognition,
        }
    elif chosen == "spatius":
        # The service's latency is covered by holding the audio back this long.
        kwargs = {
            "lookahead_ms": settings.motion.lookahead_ms,
            "telemetry": settings.motion.spatius_telemetry,
        }
    try:
        return create_motion_source(chosen, **kwargs)
    except (MotionError, ImportError) as exc:
        raise ValueError(f"motion source {chosen!r} cannot be used: {exc}") from exc


__all__ = [
    "motion_source_from_settings",
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
